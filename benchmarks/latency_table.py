"""Does a per-layer latency table predict real latency, and does it see what MACs hide?

ResNet-20 (3x32x32, random weights: latency does not depend on values), the bundled search space
(`search_spaces/resnet20.yaml`), batch sizes 1 and 64, fixed CPU threads:

1. build the latency table (every conv/linear layer at every width the space reaches, plus a constant
   overhead measured on the dense model);
2. draw candidates: ``space.sample(rng)`` of the bundled space (seed 0: a uniform choice per group,
   projected onto 50% of the dense MACs: the "budget" set, MACs ratios ~0.3-0.5), and a "spread" set whose
   keep ratios are drawn from ``U(a, 1)`` with ``a ~ U(0, 1)`` per candidate, snapped to the nearest choices
   without a budget (MACs ratios ~0.1-1.0);
3. extract each candidate (kept = first k channels of every group), measure its real latency in one
   interleaved run with the dense model (``autoprune.metrics.measure_interleaved``: every model once per
   round, the order rotated each round; latency = median over rounds, with its IQR) and compare with the
   table's prediction: Spearman rank correlation, mean absolute percentage error of the latency (ms) and
   of the latency ratio to the dense model (what a latency budget uses; the measured ratio is the median
   of the per-round ratios to the dense model of the same run), and the Spearman correlation of MACs with
   the measured latency for the same candidates.

``--form deploy`` builds the table in deploy form and measures the candidates and the dense model in deploy
form too (``autoprune.optimize_for_inference``: BatchNorm folded, channels-last); results go to
``latency_table_deploy.{json,md}``.

Run:  .venv/bin/python benchmarks/latency_table.py [--threads 2] [--candidates 20] [--rounds 15]
      [--form eager|deploy] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from autoprune.engine.deploy import FORMS, in_form
from autoprune.engine.latency_table import LatencyTable, build_latency_table
from autoprune.engine.plan import PrunePlan, apply_plan
from autoprune.engine.structure import ModelStructure
from autoprune.metrics import PROTOCOL, LatencyStats, RatioStats, count_macs, measure_interleaved, ratio
from autoprune.models import build_model
from autoprune.search_spaces import load_space

BATCHES = (1, 64)
SHAPE = (1, 3, 32, 32)


def extract(structure: ModelStructure, counts: dict[str, int]) -> torch.nn.Module:
    plan = PrunePlan(
        input_shape=structure.input_shape,
        channels={g.name: g.channels for g in structure.groups},
        kept={g.name: list(range(counts.get(g.name, g.channels))) for g in structure.groups},
    )
    return apply_plan(structure.model, plan).eval()


def measure_together(models: list[torch.nn.Module], batch: int, threads: int, rounds: int,
                     repeats: int) -> tuple[list[LatencyStats], list[RatioStats]]:  # fmt: skip
    """One interleaved run over ``models`` (the dense one first): each one's stats and ratio to the first."""
    named = {str(i): m for i, m in enumerate(models)}
    stats = measure_interleaved(named, SHAPE, batch_size=batch, rounds=rounds, warmup=3, repeats=repeats,
                                threads=threads)  # fmt: skip
    return [stats[k] for k in named], [ratio(stats, k, "0") for k in named]


def compare(
    predicted: list[float], measured: list[float], macs: list[int], predicted_dense: float,
    measured_ratios: list[float],
) -> dict[str, float]:
    """Rank correlations and errors; the ratio error is what a latency budget (a fraction of dense) relies on.

    ``measured_ratios``: each candidate's measured ratio to the dense model (median of per-round ratios).
    """
    pred, real = np.asarray(predicted), np.asarray(measured)
    pred_ratio, real_ratio = pred / predicted_dense, np.asarray(measured_ratios)
    return {
        "spearman_table": float(spearmanr(pred, real).statistic),
        "mape_table_pct": float(np.mean(np.abs(pred - real) / real) * 100),
        "mape_ratio_pct": float(np.mean(np.abs(pred_ratio - real_ratio) / real_ratio) * 100),
        "spearman_macs": float(spearmanr(np.asarray(macs), real).statistic),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=15, help="rounds of the interleaved run over the candidates")
    parser.add_argument("--form", choices=FORMS, default="eager", help="eager, or deploy (folded, channels-last)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    torch.manual_seed(args.seed)
    structure = ModelStructure(build_model("resnet20", num_classes=10, in_channels=3).eval(), SHAPE)
    budget = load_space("resnet20", structure)  # metric macs, target 0.5
    spread = load_space("resnet20", structure, target=1.0)
    rng = np.random.default_rng(args.seed)
    n = len(budget.groups)
    candidates = {
        "budget": [budget.sample(rng) for _ in range(args.candidates)],
        "spread": [spread.project(rng.uniform(rng.uniform(0.0, 1.0), 1.0, n)) for _ in range(args.candidates)],
    }
    dense_macs = structure.dense_macs
    results: dict[str, Any] = {}
    for batch in BATCHES:
        repeats = 5 if batch == 1 else 1  # passes per model and round (a round's time is their mean)
        start = time.perf_counter()
        table = build_latency_table(structure, budget.choices, batch_size=batch, threads=args.threads, repeats=20,
                                    form=args.form)  # fmt: skip
        build_s = time.perf_counter() - start
        row: dict[str, Any] = {
            "table_build_s": build_s,
            "table_widths": sum(len(e) for e in table.entries.values()),
            "overhead_ms": table.overhead_ms,
            "predicted_dense_ms": table.predict(structure, {}),
        }
        for name, counts_list in candidates.items():
            models = [in_form(m, args.form) for m in (structure.model, *(extract(structure, c) for c in counts_list))]
            stats, ratios = measure_together(models, batch, args.threads, args.rounds, repeats)
            measured = [st.median_ms for st in stats]
            measured_ratios = [r.median for r in ratios[1:]]
            predicted = [table.predict(structure, c) for c in counts_list]
            macs = [count_macs(m, SHAPE) for m in models[1:]]
            row[name] = {
                **compare(predicted, measured[1:], macs, row["predicted_dense_ms"], measured_ratios),
                "measured_dense_ms": measured[0],
                "measured_dense_iqr_ms": stats[0].iqr_ms,
                "rounds": stats[0].rounds,
                "threads": stats[0].threads,
                "macs_ratio_range": [min(macs) / dense_macs, max(macs) / dense_macs],
                "measured_ratio_range": [min(measured_ratios), max(measured_ratios)],
                "median_ratio_iqr": statistics.median(r.iqr for r in ratios[1:]),
                "candidates": [
                    {"counts": c, "macs_ratio": m / dense_macs, "predicted_ms": p, "measured_ms": st.median_ms,
                     "measured_iqr_ms": st.iqr_ms, "measured_ratio": r.median, "measured_ratio_iqr": r.iqr}
                    for c, m, p, st, r in zip(counts_list, macs, predicted, stats[1:], ratios[1:], strict=True)
                ],
            }
            print(json.dumps({"batch": batch, "set": name, **{k: v for k, v in row[name].items()
                                                               if k != "candidates"}}), flush=True)
        results[f"b{batch}"] = row
        _table_note(table, batch)
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": "resnet20 (3x32x32 input, random weights), bundled space search_spaces/resnet20.yaml",
        "threads": args.threads,
        "seed": args.seed,
        "candidates": args.candidates,
        "form": args.form,
        "rounds": args.rounds,
        "protocol": "table: median of 20 timed passes after 3 warm-ups per distinct layer shape and for the dense "
        f"model (its overhead); candidates: one interleaved run over dense + candidates per set and batch size, "
        f"{args.rounds} rounds after 3 warm-up passes, a round's time the mean of 5 passes at batch 1 (one at "
        f"64) ({PROTOCOL}); kept channels = the first k of every group",
        "torch": torch.__version__,
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "latency_table" if args.form == "eager" else f"latency_table_{args.form}"
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(_markdown(meta, results))


def _table_note(table: LatencyTable, batch: int) -> None:
    print(f"# batch {batch}: table {table.device}, {table.threads} threads, overhead {table.overhead_ms:.3f} ms",
          flush=True)


def _markdown(meta: dict[str, Any], results: dict[str, Any]) -> str:
    lines = [
        f"# Latency table vs measured latency, ResNet-20 ({meta['threads']} CPU threads, "
        f"{meta.get('form', 'eager')} form)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']} ({meta['cpu_count']} CPUs), torch {meta['torch']}, {meta['date']}  ",
        f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in meta['load_average_before'])}; "
        f"after: {', '.join(f'{x:.2f}' for x in meta['load_average_after'])}",
        "",
        f"{meta['candidates']} candidates per set (seed {meta['seed']}): **budget** = `space.sample(rng)` of the "
        "bundled space (target 0.5 of the dense MACs); **spread** = keep ratios from U(a, 1), a ~ U(0, 1) per "
        "candidate, snapped to the space's choices without a budget.",
        "",
        "| batch | set | MACs ratio range | measured latency ratio range | median IQR of a ratio "
        "| Spearman(table, measured) | Spearman(MACs, measured) | MAPE of ms | MAPE of ratio to dense |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in results.items():
        for name in ("budget", "spread"):
            r = row[name]
            lines.append(
                f"| {key[1:]} | {name} | {r['macs_ratio_range'][0]:.3f}–{r['macs_ratio_range'][1]:.3f} | "
                f"{r['measured_ratio_range'][0]:.3f}–{r['measured_ratio_range'][1]:.3f} | "
                f"{r.get('median_ratio_iqr', float('nan')):.3f} | {r['spearman_table']:.3f} | "
                f"{r['spearman_macs']:.3f} | {r['mape_table_pct']:.1f}% | "
                f"{r['mape_ratio_pct']:.1f}% |"
            )
    lines += ["", "| batch | table widths | build time (s) | overhead (ms) | predicted dense (ms) | measured dense "
              "(ms, budget set / spread set) |", "|---|---|---|---|---|---|"]
    for key, row in results.items():
        lines.append(
            f"| {key[1:]} | {row['table_widths']} | {row['table_build_s']:.1f} | {row['overhead_ms']:.3f} | "
            f"{row['predicted_dense_ms']:.3f} | {row['budget']['measured_dense_ms']:.3f} / "
            f"{row['spread']['measured_dense_ms']:.3f} |"
        )
    lines += ["", f"Protocol: {meta['protocol']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
