"""One policy for every budget (issue 17): a budget-conditioned agent against uniform and TPE, per budget.

Over the supernet of ``benchmarks/layer_ratios.py`` (``--work``: ``supernet/supernet.pt`` and ``base.json``):

1. ``autoprune search --searcher SEARCHER --target-range LOW:HIGH --trials N``: one agent trained once over
   the range (stage ``policy-SEARCHER-LOW-HIGH``; its ``policy.zip``);
2. per budget in ``--targets`` (inside the range and between its trained draws): ``autoprune search
   --policy policy.zip --target-macs T``, one rollout, re-scored beside the uniform candidate as the
   honest-winner rule does (stage ``answer-T``: what the tool returns, no new search);
3. per budget: ``autoprune search --searcher tpe --target-macs T --trials K`` (stage ``tpe-T``).

Reported per budget: test accuracy (± SE) of the policy's returned model, of the uniform candidate and of
TPE's winner, no finetuning, and the evaluations each used (the policy's training episodes are shared by
every budget; each answer adds two validation re-scorings).

Example (after ``benchmarks/layer_ratios.py --model vgg_small --work /work/bench16/vgg_small``)::

    nohup .venv/bin/python benchmarks/policy_front.py --model vgg_small --work /work/bench16/vgg_small \\
        --range 0.2:0.4 --targets 0.2 0.25 0.3 0.35 0.4 --trials 300 --threads 1 &
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stages import run_stage
from _supernet_options import add_stage_options


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_stage_options(p, name_help="the model")
    p.add_argument("--searcher", default="ddpg", choices=["ddpg", "td3", "sac", "ppo"])
    p.add_argument("--range", default="0.2:0.4", help="LOW:HIGH fractions of the MACs the agent trains over")
    p.add_argument("--targets", type=float, nargs="+", help="budgets to answer (default 0.2 0.25 0.3 0.35 0.4)")
    p.add_argument("--trials", type=int, default=300, help="training episodes of the agent")
    p.add_argument("--warmup", type=int, default=100, help="warm-up episodes of random actions (AMC: 100)")
    p.add_argument("--tpe-trials", type=int, default=40, help="trials of each per-budget TPE search")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.quick:
        a.dataset, a.trials, a.warmup, a.tpe_trials = "digits", 6, 2, 4
        a.range, a.targets = "0.3:0.5", a.targets or [0.3, 0.45]
    a.targets = a.targets or [0.2, 0.25, 0.3, 0.35, 0.4]
    base = json.loads((a.work / "base.json").read_text())
    data = ["--model", a.model, "--dataset", a.dataset, "--threads", str(a.threads)]
    if a.dataset != "digits":
        data += ["--data-dir", str(a.data_dir)]
    common = [*data, *(["--space", a.space] if a.space else []), "--checkpoint", base["checkpoint"],
              "--supernet", str(a.work / "supernet" / "supernet.pt"), "--seed", str(a.seed), "--no-onnx"]
    name = a.name or f"policy_front_{a.model}"
    low, high = (float(x) for x in a.range.split(":"))
    result: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/policy_front.py", *sys.argv[1:]]),
        "settings": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
                     "dense_checkpoint": base["checkpoint"], "dense_epochs": base.get("epochs")},
        "machine": platform.platform(), "cpus": os.cpu_count(), "targets": {}}

    def save() -> None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / f"{name}.json").write_text(json.dumps(result, indent=1))
        (a.out / f"{name}.md").write_text(render(result))

    stage = f"policy-{a.searcher}-{low:g}-{high:g}"
    train = run_stage(a.work, stage, ["search", *common, "--searcher", a.searcher, "--target-range", a.range,
                                      "--trials", str(a.trials), "--searcher-option", f"warmup={a.warmup}"])
    result["policy"] = {"stage": stage, "episodes": a.trials, "evaluations": train["search"]["evaluations"],
                        "seconds": train["wall_time_s"]}
    save()
    for t in a.targets:
        answer = run_stage(a.work, f"answer-{t:g}", ["search", *common, "--policy", str(a.work / stage / "policy.zip"),
                                                     "--target-macs", str(t)])
        tpe = run_stage(a.work, f"tpe-{t:g}", ["search", *common, "--searcher", "tpe", "--target-macs", str(t),
                                               "--trials", str(a.tpe_trials)])
        result["targets"][f"{t:g}"] = {
            "inside_range": low <= t <= high,
            "policy": {**answer["pruned"], "macs_ratio": answer["macs_ratio"], "seconds": answer["wall_time_s"],
                       "returned": answer["winner"]["source"]},
            "uniform": answer["uniform"],
            "tpe": {**tpe["pruned"], "macs_ratio": tpe["macs_ratio"], "evaluations": tpe["search"]["evaluations"],
                    "seconds": tpe["wall_time_s"]}}
        save()
    print(render(result))


def _acc(block: dict[str, Any]) -> str:
    return f"{block['accuracy']:.4f} ± {block['accuracy_se']:.4f}"


def render(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [f"# One policy for every budget: {s['model']} on {s['dataset']}", ""]
    if "policy" in r:
        pol = r["policy"]
        lines.append(f"One {s['searcher']} agent trained over {s['range']} of the MACs: {pol['episodes']} episodes "
                     f"({pol['evaluations']} evaluations, {pol['seconds']:.0f} s, warm-up {s['warmup']}), then one "
                     f"rollout per budget, re-scored beside the uniform candidate on validation (the returned model "
                     f"is the better of the two). TPE: {s['tpe_trials']} trials per budget. No finetuning; dense "
                     f"model `{s['dense_checkpoint']}` ({s['dense_epochs']} epochs).")
    lines += ["", "| budget (MACs) | in range | policy's returned model, test | returned | MACs ratio | uniform, test "
              "| TPE winner, test | TPE evaluations | policy − uniform | TPE − policy |", "|---" * 10 + "|"]
    for t, row in r["targets"].items():
        pol, uni, tpe = row["policy"], row["uniform"], row["tpe"]
        lines.append(f"| {t} | {'yes' if row['inside_range'] else 'no'} | {_acc(pol)} | {pol['returned']} | "
                     f"{pol['macs_ratio']:.3f} | {_acc(uni)} | {_acc(tpe)} | {tpe['evaluations']} | "
                     f"{100 * (pol['accuracy'] - uni['accuracy']):+.2f} | "
                     f"{100 * (tpe['accuracy'] - pol['accuracy']):+.2f} |")
    lines += ["", "Differences in points of test accuracy; each accuracy's own SE is beside it (a difference "
              "smaller than about twice that is within noise).", "",
              f"Command: `{r['command']}`; {r['machine']}, {r['cpus']} CPUs."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
