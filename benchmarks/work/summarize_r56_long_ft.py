"""Summarise run_r56_long_ft.sh: two structures (the 2-epoch ground truth's best, uniform) after 2 and 6 epochs.

Reads WORK/keep-<name>-ft6-s<seed>/report.json (finished runs only), the 2-epoch ground truth of the same
structures from WORK/fidelity-0.2.jsonl, and the L1 + 6 epochs baselines; writes
benchmarks/results/structure_long_ft_resnet56_0.2.md and .json.
Usage: .venv/bin/python benchmarks/work/summarize_r56_long_ft.py
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

WORK = Path("benchmarks/work/resnet56")
OUT = Path("benchmarks/results/structure_long_ft_resnet56_0.2")
NAMES = ("winner-h0.3-s0", "uniform")
BASELINES = ("l1-local-0.2", "l1-global-0.2")


def mean_se(xs: list[float]) -> tuple[float, float]:
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else float("nan"))


def pts(ms: tuple[float, float]) -> str:
    return f"{100 * ms[0]:+.2f}" + ("" if ms[1] != ms[1] else f" ± {100 * ms[1]:.2f}")


def main() -> None:
    truth2: dict[str, list[float]] = {n: [] for n in NAMES}
    for line in (WORK / "fidelity-0.2.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["name"] in truth2:
            truth2[row["name"]].append(row["truth_test"])
    ft6: dict[str, dict[int, dict]] = {n: {} for n in NAMES}
    for name in NAMES:
        for rep_path in sorted(WORK.glob(f"keep-{name}-ft6-s*/report.json")):
            rep = json.loads(rep_path.read_text())
            if rep.get("status") != "ok":
                continue
            ft6[name][rep["seed"]] = {"test": rep["pruned"]["accuracy"], "test_se": rep["pruned"]["accuracy_se"],
                                      "macs_ratio": rep["macs_ratio"], "seconds": rep["wall_time_s"]}
    seeds = sorted(set(ft6[NAMES[0]]) & set(ft6[NAMES[1]]))
    diff6 = [ft6[NAMES[0]][s]["test"] - ft6[NAMES[1]][s]["test"] for s in seeds]
    (m_w, se_w), (m_u, se_u) = (mean_se(truth2[n]) for n in NAMES)
    diff2 = (m_w - m_u, (se_w ** 2 + se_u ** 2) ** 0.5)  # replicates had different seeds: unpaired
    base: dict[str, dict[int, dict]] = {k: {} for k in BASELINES}
    for k in BASELINES:
        for rep_path in [WORK / k / "report.json", *sorted(WORK.glob(f"{k}-s*/report.json"))]:
            rep = json.loads(rep_path.read_text()) if rep_path.exists() else {}
            if rep.get("status") == "ok":  # seed 0 ran as layer_ratios.py's baseline, later seeds as KEY-sS
                base[k][rep["seed"]] = {"test": rep["pruned"]["accuracy"], "test_se": rep["pruned"]["accuracy_se"],
                                        "macs_ratio": rep["macs_ratio"], "seconds": rep["wall_time_s"]}
    vs_local = {n: [ft6[n][s]["test"] - base["l1-local-0.2"][s]["test"]
                    for s in sorted(set(ft6[n]) & set(base["l1-local-0.2"]))] for n in NAMES}
    result = {"truth_2ep": truth2, "ft6": ft6, "paired_seeds": seeds, "diff_2ep": diff2, "diff_6ep": diff6,
              "baselines": base, "minus_l1_local_6ep": vs_local}
    (OUT.parent / (OUT.name + ".json")).write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Does a structure's lead after 2 finetune epochs survive 6? ResNet-56, Fashion-MNIST, 20% of the MACs",
             "",
             "Two structures of `benchmarks/spaces/resnet56_low_streams.yaml`: `winner-h0.3-s0` (the best of the 19 "
             "fidelity candidates after cut + 2 finetune epochs, chosen there partly on test: a diagnostic, not a "
             "claim about what the tool returns) and the space's uniform candidate. Each is cut from the converged "
             "dense model with L1 (`autoprune prune --keep-ratios`) and finetuned 6 epochs at lr 0.01, as the "
             "uniform L1 + 6 epochs baseline; seeds change the finetuning's data order and augmentation.", "",
             "| structure | after 2 epochs (fidelity ground truth, test, each replicate) | after 6 epochs (test ± SE, "
             "per seed) | MACs ratio |", "|---|---|---|---|"]
    for name in NAMES:
        six = ", ".join(f"s{s}: {r['test']:.4f} ± {r['test_se']:.4f}" for s, r in sorted(ft6[name].items()))
        macs = next(iter(ft6[name].values()))["macs_ratio"] if ft6[name] else float("nan")
        lines.append(f"| {name} | {', '.join(f'{x:.4f}' for x in truth2[name])} | {six or '-'} | {macs:.3f} |")
    for k, runs in base.items():
        six = ", ".join(f"s{s}: {r['test']:.4f} ± {r['test_se']:.4f}" for s, r in sorted(runs.items()))
        macs = next(iter(runs.values()))["macs_ratio"] if runs else float("nan")
        lines.append(f"| {k} (`--target-macs 0.2`, round to 8) | - | {six} | {macs:.3f} |")
    lines += ["", f"- winner − uniform after 2 epochs: **{pts(diff2)} points** (difference of the replicates' means, "
              f"SE from the replicates' spread, {len(truth2[NAMES[0]])} and {len(truth2[NAMES[1]])} replicates).",
              f"- winner − uniform after 6 epochs: **{pts(mean_se(diff6)) if diff6 else 'n/a'} points** "
              f"(paired seeds {seeds}; each accuracy also has its own test-set SE of ~0.25 points).",
              *(f"- {n} − l1-local-0.2 after 6 epochs: **{pts(mean_se(d)) if d else 'n/a'} points** "
                f"({len(d)} paired seeds)" for n, d in vs_local.items()), "",
              "Command: `bash benchmarks/work/run_r56_long_ft_all.sh` (`run_r56_long_ft.sh NAME SEED THREADS` "
              "per run, two 1-thread runs side by side on 2 cores; L1 baselines of seed 1: "
              "`run_r56_l1_seed.sh SCOPE 1 1`), then "
              "`.venv/bin/python benchmarks/work/summarize_r56_long_ft.py`."]
    (OUT.parent / (OUT.name + ".md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
