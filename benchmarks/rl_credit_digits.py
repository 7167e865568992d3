"""Which reward credit makes AMC-style DDPG learn faster on digits: every step (AMC) or the last step only.

- ``every_step``: every transition of an episode gets the episode's reward minus the moving-average
  baseline (AMC's recipe), gamma = 1.
- ``final``: only the last transition gets it; gamma = 1 bootstraps it back to every step.

Builds the same small digits supernet as the test fixture (ResNet-20, 4 epochs + 1 sandwich epoch, bundled
resnet20 space at 50% MACs), then runs DDPG with each credit for several seeds and records, per credit,
the best validation accuracy after N episodes and the mean accuracy of the policy's own episodes in
windows (higher later windows = it learned). Writes benchmarks/results/rl_credit_digits.{json,md}.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rl_credit_digits.py --seeds 5 --episodes 60
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from autoprune.data import load_dataset
from autoprune.engine.structure import ModelStructure
from autoprune.evaluate import SupernetEvaluator
from autoprune.models import build_model
from autoprune.pipelines.oneshot import build_supernet, resolve_space
from autoprune.search import SearchConfig, make_searcher, run_search
from autoprune.seed import seed_everything
from autoprune.supernet import SupernetConfig
from autoprune.training import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0)
    splits = load_dataset("digits")
    model = build_model("resnet20", num_classes=10, in_channels=1)
    train(model, splits.train_loader(64, seed=0), TrainConfig(epochs=4, lr=0.05), progress=False)
    space = resolve_space(ModelStructure(copy.deepcopy(model), splits.input_shape()), "resnet20", None, 0.5)
    run = build_supernet(model, splits.input_shape(), space, splits.train_loader(64, seed=1),
                         SupernetConfig(epochs=1, lr=0.02, num_random=1, seed=0), progress=False)
    run.supernet.eval()

    def evaluator() -> SupernetEvaluator:
        return SupernetEvaluator(run.supernet, splits.val_loader(64), splits.calibration_loader(64, seed=0),
                                 bn_batches=2)

    uniform = evaluator().evaluate(run.space.uniform(1.0)).accuracy
    val_samples = sum(y.numel() for _, y in splits.val_loader(64))
    results: dict[str, dict[str, object]] = {}
    for credit in ("every_step", "final", "random"):  # random search: a reference, not a credit
        curves, seconds = [], []
        for seed in range(args.seeds):
            t = time.perf_counter()
            if credit == "random":
                searcher = make_searcher("random", run.space, seed=seed)
            else:
                searcher = make_searcher("ddpg", run.space, seed=seed, warmup=args.warmup, credit=credit)
            res = run_search(searcher, evaluator(), SearchConfig(trials=args.episodes), progress=False)
            seconds.append(time.perf_counter() - t)
            curves.append([tr.accuracy or 0.0 for tr in res.trials])
        acc = np.array(curves)
        best_so_far = np.maximum.accumulate(acc, axis=1)
        marks = sorted({min(m, args.episodes) for m in (20, 40, args.episodes)})
        windows = range(0, args.episodes, args.window)
        results[credit] = {
            "best_after": {m: float(best_so_far[:, m - 1].mean()) for m in marks},
            "mean_accuracy_by_window": {f"{w + 1}-{min(w + args.window, args.episodes)}":
                                        float(acc[:, w:w + args.window].mean()) for w in windows},
            "seconds_per_search": float(np.mean(seconds)),
            "per_seed_best": [float(b) for b in best_so_far[:, -1]],
        }
    meta = {"command": " ".join(["OMP_NUM_THREADS=1", Path(sys.executable).name, *sys.argv]),
            "seeds": args.seeds, "episodes": args.episodes, "warmup": args.warmup, "threads": args.threads,
            "uniform_accuracy": uniform, "val_samples": val_samples, "target": run.space.target,
            "torch": torch.__version__,
            "machine": platform.platform(), "date": time.strftime("%Y-%m-%d")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rl_credit_digits.json").write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    lines = [
        "# DDPG reward credit on digits (ResNet-20 supernet, 50% MACs)", "",
        f"Command: `{meta['command']}` ({args.threads} CPU thread, {meta['date']}); {args.seeds} seeds x "
        f"{args.episodes} episodes ({args.warmup} warm-up). Validation accuracy on {val_samples} held-out digits "
        "training samples; "
        f"uniform keep ratios at the budget: {uniform:.4f}.", "",
    ]
    for credit, r in results.items():
        lines.append("## random search (reference)" if credit == "random" else f"## DDPG, credit = {credit}")
        lines.append("")
        lines.append("| | " + " | ".join(str(k) for k in r["best_after"]) + " |")  # type: ignore[attr-defined]
        lines.append("|---" * (1 + len(r["best_after"])) + "|")  # type: ignore[arg-type]
        lines.append("| best accuracy after N episodes (mean over seeds) | "
                     + " | ".join(f"{v:.4f}" for v in r["best_after"].values()) + " |")  # type: ignore[attr-defined]
        lines.append("")
        lines.append("| episodes | " + " | ".join(r["mean_accuracy_by_window"]) + " |")  # type: ignore[arg-type]
        lines.append("|---" * (1 + len(r["mean_accuracy_by_window"])) + "|")  # type: ignore[arg-type]
        lines.append("| mean accuracy of the episodes | "
                     + " | ".join(f"{v:.4f}" for v in r["mean_accuracy_by_window"].values()) + " |")  # type: ignore[attr-defined]
        lines.append("")
        lines.append(f"{r['seconds_per_search']:.1f} s per search; best per seed: "
                     + ", ".join(f"{b:.4f}" for b in r["per_seed_best"]) + ".")  # type: ignore[attr-defined]
        lines.append("")
    last = {c: list(r["mean_accuracy_by_window"].values())[-1]  # type: ignore[attr-defined]
            for c, r in results.items() if c != "random"}
    winner = max(last, key=lambda c: last[c])
    lines.append(f"Learns faster: **{winner}** (mean accuracy of the last {args.window} episodes: "
                 + ", ".join(f"{c} {v:.4f}" for c, v in last.items()) + "). The DDPG searcher's default credit is "
                 "`every_step` (AMC's recipe).")
    (args.out / "rl_credit_digits.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
