"""RL against random search at equal cost (issue 17): DDPG (AMC recipe), PPO and random, same evaluations.

Over the supernet of ``benchmarks/layer_ratios.py`` (``--work``: its ``supernet/supernet.pt`` and the dense
model it was trained from, ``base.json``), every searcher runs ``autoprune search`` with the same number of
trials (``--trials``, ≥ 300 for the issue) at one budget, for every seed, exactly as a user runs it: the
returned winner is fixed by the command's own re-scoring on validation (top-k on the whole validation split)
and scored on test beside the uniform candidate of the same supernet. Each run is a stage folder
``rl-SEARCHER-TARGET-sSEED`` under ``--work`` (resumable: a killed search continues with ``--resume``).

Reported per searcher: mean ± standard error over seeds of the winner's test accuracy, winner − uniform,
and each RL searcher − random (per seed, then mean ± SE), with evaluations and wall time.

DDPG follows AMC (He et al., 2018) except where recorded in the results: warm-up episodes of random
actions (AMC: 100, here ``--warmup``), truncated-normal exploration noise σ = 0.5 decaying ×0.95 per episode
after warm-up, the moving-average reward baseline, actor/critic 300-300, τ = 0.01, batch 64, every step of an
episode credited with the final reward, actions bounded so the budget stays reachable. Deliberate
differences: the reward is validation accuracy with the budget enforced by the action bounds (AMC's
resource-constrained variant; AMC also clips actions to the budget), and episodes are scored on the
supernet (shared weights + adaptive BN) rather than on the pruned pretrained model.

Example (after ``benchmarks/layer_ratios.py --model vgg_small --work /work/bench16/vgg_small``)::

    nohup .venv/bin/python benchmarks/rl_equal_cost.py --model vgg_small --work /work/bench16/vgg_small \\
        --target 0.2 --trials 300 --seeds 0 1 2 --threads 1 &
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stages import mean_se, run_stage
from _supernet_options import add_stage_options


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_stage_options(p, name_help="the model and target")
    p.add_argument("--target", type=float, default=0.2)
    p.add_argument("--searchers", nargs="+", default=["ddpg", "ppo", "random"])
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--warmup", type=int, default=100, help="DDPG/TD3 warm-up episodes of random actions (AMC: 100)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--val-batches", type=int, default=None,
                   help="validation batches per candidate during the search (same for every searcher)")
    a = p.parse_args()
    if a.quick:
        a.dataset, a.trials, a.warmup, a.seeds = "digits", 4, 2, a.seeds[:2]
    base = json.loads((a.work / "base.json").read_text())
    data = ["--model", a.model, "--dataset", a.dataset, "--threads", str(a.threads)]
    if a.dataset != "digits":
        data += ["--data-dir", str(a.data_dir)]
    space = ["--space", a.space] if a.space else []
    extra = ["--val-batches", str(a.val_batches)] if a.val_batches else []
    name = a.name or f"rl_equal_cost_{a.model}_{a.target:g}"
    result: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/rl_equal_cost.py", *sys.argv[1:]]),
        "settings": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
                     "dense_checkpoint": base["checkpoint"], "dense_epochs": base.get("epochs")},
        "machine": platform.platform(), "cpus": os.cpu_count(), "runs": {}}
    for seed in a.seeds:
        for searcher in a.searchers:
            options = ["--searcher-option", f"warmup={a.warmup}"] if searcher in ("ddpg", "td3") else []
            rep = run_stage(a.work, f"rl-{searcher}-{a.target:g}-s{seed}",
                            ["search", *data, *space, "--checkpoint", base["checkpoint"],
                             "--supernet", str(a.work / "supernet" / "supernet.pt"), "--target-macs", str(a.target),
                             "--searcher", searcher, "--trials", str(a.trials), "--seed", str(seed), "--no-onnx",
                             *options, *extra])
            result["runs"].setdefault(searcher, {})[str(seed)] = {
                "winner": rep["pruned"], "uniform": rep["uniform"], "macs_ratio": rep["macs_ratio"],
                "winner_minus_uniform_test": rep["pruned"]["accuracy"] - rep["uniform"]["accuracy"],
                "vs_uniform_val": rep["vs_uniform"], "evaluations": rep["search"]["evaluations"],
                "trials": a.trials, "seconds": rep["wall_time_s"], "searcher_state": rep["search"].get("state")}
            summarize(result, a.searchers)
            a.out.mkdir(parents=True, exist_ok=True)
            (a.out / f"{name}.json").write_text(json.dumps(result, indent=1))
            (a.out / f"{name}.md").write_text(render(result))
    print(render(result))


def summarize(result: dict[str, Any], searchers: list[str]) -> None:
    """Per searcher: mean ± SE over seeds; per RL searcher: its winner − random's, seed by seed."""
    summary: dict[str, Any] = {}
    runs = result["runs"]
    for s, by_seed in runs.items():
        summary[s] = {"winner_test": mean_se([r["winner"]["accuracy"] for r in by_seed.values()]),
                      "winner_minus_uniform_test": mean_se([r["winner_minus_uniform_test"] for r in by_seed.values()]),
                      "evaluations": mean_se([float(r["evaluations"]) for r in by_seed.values()]),
                      "seeds": len(by_seed)}
        if s != "random" and "random" in runs:
            common = [k for k in by_seed if k in runs["random"]]
            summary[s]["minus_random_test"] = mean_se(
                [by_seed[k]["winner"]["accuracy"] - runs["random"][k]["winner"]["accuracy"] for k in common])
    result["summary"] = summary


def _pm(pair: list[float] | tuple[float, float], scale: float = 100.0, digits: int = 2) -> str:
    m, se = pair
    return f"{scale * m:+.{digits}f}" + ("" if math.isnan(se) else f" ± {scale * se:.{digits}f}")


def render(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [f"# RL against random at equal cost: {s['model']} on {s['dataset']}, {s['target']:.0%} of the MACs", "",
             f"{s['trials']} trials per search (every searcher the same), seeds {s['seeds']}, DDPG warm-up "
             f"{s['warmup']} random episodes; winners fixed by the command's own validation re-scoring, no "
             f"finetuning; dense model: `{s['dense_checkpoint']}` ({s['dense_epochs']} epochs).", "",
             "| searcher | seed | winner test ± SE | MACs ratio | winner − uniform (test, points) | evaluations | "
             "wall time (s) |", "|---|---|---|---|---|---|---|"]
    for searcher, by_seed in r["runs"].items():
        for seed, run in by_seed.items():
            w = run["winner"]
            lines.append(f"| {searcher} | {seed} | {w['accuracy']:.4f} ± {w['accuracy_se']:.4f} | "
                         f"{run['macs_ratio']:.3f} | {100 * run['winner_minus_uniform_test']:+.2f} | "
                         f"{run['evaluations']} | {run['seconds']:.0f} |")
    lines += ["", "| searcher | seeds | winner test (mean ± SE over seeds) | winner − uniform (points) | "
              "− random (points, per seed) |", "|---|---|---|---|---|"]
    for searcher, summ in r.get("summary", {}).items():
        m, se = summ["winner_test"]
        acc = f"{m:.4f}" + ("" if math.isnan(se) else f" ± {se:.4f}")
        vs_random = _pm(summ["minus_random_test"]) if "minus_random_test" in summ else "-"
        lines.append(f"| {searcher} | {summ['seeds']} | {acc} | {_pm(summ['winner_minus_uniform_test'])} | "
                     f"{vs_random} |")
    lines += ["", f"Command: `{r['command']}`; {r['machine']}, {r['cpus']} CPUs."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
