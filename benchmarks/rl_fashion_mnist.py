"""RL searchers on real data: best validation accuracy vs episodes for DDPG (AMC), PPO and random search.

Over a trained Fashion-MNIST ResNet-20 supernet (``--supernet``, from ``autoprune supernet``), each
searcher runs ``--episodes`` trials at the budget (``--target`` of the dense MACs) through the search
runner, with a fresh evaluator each (no shared cache). Recorded per searcher: the best validation accuracy
after N episodes, the wall time to get there, the best candidate's MACs ratio, and the test accuracy of
the best candidate exported from the supernet (adaptive BN, no finetuning). The widest uniform-ratio
candidate within the budget (``space.uniform(1.0)``) is scored the same way for reference.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rl_fashion_mnist.py --supernet /tmp/fm-bench/sn/supernet.pt \
          --threads 1 --episodes 60
Writes benchmarks/results/rl_fashion_mnist.{json,md} (``--name`` changes the file stem).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _supernet_options import add_supernet_options  # benchmarks/, on sys.path when a script runs

from autoprune.data import load_dataset
from autoprune.evaluate import SupernetEvaluator
from autoprune.metrics import evaluate_accuracy
from autoprune.models import build_model
from autoprune.search import SearchConfig, Trial, make_searcher, run_search
from autoprune.search_spaces import space_from_dict
from autoprune.seed import seed_everything
from autoprune.supernet import Supernet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_supernet_options(p)
    p.add_argument("--searchers", nargs="+", default=["ddpg", "ppo", "random"])
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--warmup", type=int, default=15, help="DDPG warm-up episodes")
    p.add_argument("--target", type=float, default=0.5)
    p.add_argument("--budget-slack", default="0.02", help="RL episodes' lower clipping ('none': above only)")
    p.add_argument("--val-batches", type=int, default=8, help="validation batches of 256 per evaluation")
    p.add_argument("--name", default="rl_fashion_mnist", help="file stem of the results in --out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    start = time.perf_counter()
    splits = load_dataset("fashion-mnist", args.data_dir)
    net, meta = Supernet.load(args.supernet, build_model("resnet20", num_classes=10, in_channels=1))
    net.eval()
    space = space_from_dict({**meta["space"], "target": args.target}, net.structure)
    val = [b for _, b in zip(range(args.val_batches), splits.val_loader(256), strict=False)]
    calib = splits.calibration_loader(64, seed=0)
    test = splits.test_loader()

    def evaluator() -> SupernetEvaluator:
        return SupernetEvaluator(net, val, calib, bn_batches=args.bn_batches)

    def test_accuracy(counts: dict[str, int]) -> float:
        return evaluate_accuracy(net.extract(counts, calibration=calib, bn_batches=args.bn_batches), test).top1

    uniform_counts = space.uniform(1.0)
    ev = evaluator()
    uniform = ev.evaluate(uniform_counts)
    results: dict[str, Any] = {
        "uniform": {"val_accuracy": uniform.accuracy, "macs_ratio": uniform.macs_ratio,
                    "test_accuracy": test_accuracy(uniform_counts), "eval_seconds": uniform.seconds},
    }
    marks = sorted({m for m in (10, 20, 30, 45, 60, 80, 100, 150, 200) if m < args.episodes} | {args.episodes})
    for name in args.searchers:
        options: dict[str, Any] = {"warmup": args.warmup} if name in ("ddpg", "td3") else {}
        if name in ("ddpg", "td3", "sac", "ppo"):
            options["budget_slack"] = args.budget_slack
        searcher = make_searcher(name, space, seed=args.seed, **options)
        curve: list[tuple[float, float]] = []  # (best so far, seconds since start)
        t0 = time.perf_counter()

        def record(trial: Trial, curve: list[tuple[float, float]] = curve, t0: float = t0) -> None:
            best = max([c[0] for c in curve[-1:]] + [trial.accuracy or 0.0])
            curve.append((best, time.perf_counter() - t0))

        res = run_search(searcher, evaluator(), SearchConfig(trials=args.episodes, seed=args.seed),
                         progress=False, on_trial=record)
        best = res.best
        assert best is not None and best.result is not None
        results[name] = {
            "episodes": len(res.trials),
            "best_val_accuracy_after": {m: curve[m - 1][0] for m in marks if m <= len(curve)},
            "seconds_after": {m: round(curve[m - 1][1], 1) for m in marks if m <= len(curve)},
            "wall_time_s": round(res.wall_time_s, 1),
            "evaluations": res.evaluations,
            "best_counts": best.counts,
            "best_macs_ratio": best.result.macs_ratio,
            "best_val_accuracy": best.result.accuracy,
            "best_test_accuracy": test_accuracy(best.counts),
            "all_feasible": all(space.feasible(t.counts) for t in res.trials),
        }
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "best_counts"}), flush=True)
        _write(args, start, val, results, marks, [n for n in args.searchers if n in results])


def _write(args: argparse.Namespace, start: float, val: list[Any], results: dict[str, Any], marks: list[int],
           names: list[str]) -> None:
    """Write the results so far (after every searcher, so an interrupted run keeps what it measured)."""
    meta_out = {
        "command": " ".join(["OMP_NUM_THREADS=1", Path(sys.executable).name, *sys.argv]),
        "supernet": str(args.supernet), "episodes": args.episodes, "target": args.target,
        "val_samples": sum(y.numel() for _, y in val), "bn_batches": args.bn_batches, "seed": args.seed,
        "threads": args.threads, "total_seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__,
        "machine": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps({"meta": meta_out, **results}, indent=2) + "\n")
    _write_markdown(args.out / f"{args.name}.md", meta_out, results, marks, names)


def _write_markdown(path: Path, meta: dict[str, Any], results: dict[str, Any], marks: list[int],
                    names: list[str]) -> None:
    u = results["uniform"]
    lines = [
        f"# RL search on Fashion-MNIST ResNet-20 supernet, {meta['target']:g} of dense MACs", "",
        f"Command: `{meta['command']}` ({meta['threads']} CPU thread, {meta['date']}, total "
        f"{meta['total_seconds']:.0f} s). {meta['episodes']} episodes (= trials) per searcher, seed {meta['seed']}; "
        f"validation on {meta['val_samples']} held-out training samples, adaptive BN on {meta['bn_batches']}x64; "
        "test accuracy of the best candidate extracted from the supernet without finetuning.", "",
        "## Best validation accuracy after N episodes (wall time in s)", "",
        "| searcher | " + " | ".join(str(m) for m in marks) + " |", "|---" * (len(marks) + 1) + "|",
    ]
    for name in names:
        r = results[name]
        cells = [f"{r['best_val_accuracy_after'][m]:.4f} ({r['seconds_after'][m]:.0f})"
                 if m in r["best_val_accuracy_after"] else "-" for m in marks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "", "## Best candidate", "",
        "| searcher | val accuracy | MACs ratio | test accuracy (no finetuning) | wall time (s) | evaluations |",
        "|---|---|---|---|---|---|",
        f"| uniform keep ratio (reference) | {u['val_accuracy']:.4f} | {u['macs_ratio']:.4f} | "
        f"{u['test_accuracy']:.4f} | - | 1 |",
    ]
    for name in names:
        r = results[name]
        lines.append(f"| {name} | {r['best_val_accuracy']:.4f} | {r['best_macs_ratio']:.4f} | "
                     f"{r['best_test_accuracy']:.4f} | {r['wall_time_s']:.0f} | {r['evaluations']} |")
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
