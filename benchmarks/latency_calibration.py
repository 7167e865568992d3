"""Does the calibrated latency table predict the measured latency ratio within 10%? And ONNX Runtime latency.

ResNet-20 (random weights: latency does not depend on values) on 1x28x28 and 3x32x32 inputs, the bundled
space's choices (`search_spaces/resnet20.yaml`), deploy form (BatchNorm folded, channels-last), batch 1 and 64,
fixed CPU threads:

1. build the latency table with its calibration (`build_latency_table(..., calibrate=12)`: 12 candidates
   timed interleaved with the dense model in their own run, and the correction fitted to them);
2. draw a spread of candidates (`calibration_candidates(choices, 18)`: 6 uniform ones, every group at the
   same quantile of its choices, and 12 with a random choice per group) and time them all interleaved with
   the dense model in ONE run (`measure_interleaved`): each one's measured ratio to dense is the median of
   its per-round ratios;
3. split the spread in halves (even / odd index): fit a calibration on the first half (and the dense
   model) and compare, on the second half, the mean absolute percentage error (MAPE) of the predicted
   ratio to dense of: the uncalibrated table (overhead + layer sum), the calibration fitted on the first
   half, and the table's own calibration (fitted in another run: what a search uses);
4. ONNX Runtime: the dense model and the uniform candidate of the space (50% of the dense MACs) exported to
   ONNX and timed with PyTorch eager and deploy form in one interleaved run per batch size
   (`autoprune.report.compare_latency`, as report.json does).

Run:  .venv/bin/python benchmarks/latency_calibration.py [--threads 2] [--rounds 15] [--out benchmarks/results]
      [--name latency_calibration] [--note "what else ran on the machine"]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from autoprune.engine.export import export_onnx
from autoprune.engine.latency_calibration import (
    calibration_candidates,
    features,
    fit_calibration,
    measure_candidates,
    ratio_mape,
)
from autoprune.engine.latency_table import build_latency_table
from autoprune.engine.plan import apply_plan
from autoprune.engine.structure import ModelStructure
from autoprune.models import build_model
from autoprune.report import compare_latency
from autoprune.search_spaces import load_space

SHAPES = {"1x28x28": (1, 1, 28, 28), "3x32x32": (1, 3, 32, 32)}
BATCHES = (1, 64)
FORM = "deploy"


def calibration_rows(structure: ModelStructure, choices: dict[str, list[int]], args: argparse.Namespace,
                     batch: int) -> dict[str, Any]:  # fmt: skip
    """Step 1-3 for one shape and batch size."""
    start = time.perf_counter()
    table = build_latency_table(structure, choices, batch_size=batch, threads=args.threads, form=FORM,
                                calibrate=args.calibrate, seed=args.seed + 1)  # fmt: skip
    build_s = time.perf_counter() - start
    spread = calibration_candidates(choices, args.candidates, seed=args.seed)
    dense, ratios = measure_candidates(structure, spread, batch_size=batch, form=FORM, rounds=args.rounds,
                                       threads=args.threads)  # fmt: skip
    terms = [(table.layers_ms(structure, c), *features(structure, c)) for c in [{}, *spread]]
    measured = [1.0, *(r.median for r in ratios)]
    fit_idx = [i for i in range(1, len(terms)) if i % 2 == 1]  # spread[0], spread[2], ...
    eval_idx = [i for i in range(1, len(terms)) if i % 2 == 0]
    half = fit_calibration([(*terms[i], measured[i] * dense.median_ms) for i in [0, *fit_idx]],
                           table_overhead_ms=table.overhead_ms)  # fmt: skip

    def uncalibrated(i: int) -> float:
        return table.overhead_ms + terms[i][0]

    def fitted(i: int) -> float:
        return half.predict(*terms[i])

    def own(i: int) -> float:
        assert table.calibration is not None
        return table.calibration.predict(*terms[i])

    mape = {}
    for name, predict in (("table", uncalibrated), ("calibrated_half", fitted), ("calibrated_own_run", own)):
        for part, idx in (("fit_half", fit_idx), ("eval_half", eval_idx)):
            mape[f"{name}/{part}"] = ratio_mape([predict(i) / predict(0) for i in idx], [measured[i] for i in idx])
    assert table.calibration is not None
    return {
        "batch_size": batch,
        "table_build_s": round(build_s, 2),
        "overhead_ms": table.overhead_ms,
        "own_calibration": {k: v for k, v in table.calibration.to_dict().items() if k != "samples"},
        "half_calibration": {k: v for k, v in half.to_dict().items() if k != "samples"},
        "measured_dense_ms": dense.median_ms,
        "measured_dense_iqr_ms": dense.iqr_ms,
        "measured_ratio_range": [min(measured[1:]), max(measured[1:])],
        "median_ratio_iqr": sorted(r.iqr for r in ratios)[len(ratios) // 2],
        "mape_pct": mape,
        "candidates": [
            {"counts": c, "layers_ms": terms[i + 1][0], "macs": terms[i + 1][1], "activations": terms[i + 1][2],
             "measured_ratio": r.median, "ratio_iqr": r.iqr, "half": "fit" if (i + 1) % 2 == 1 else "eval",
             "predicted_ratio_table": uncalibrated(i + 1) / uncalibrated(0),
             "predicted_ratio_calibrated": fitted(i + 1) / fitted(0)}
            for i, (c, r) in enumerate(zip(spread, ratios, strict=True))
        ],
        "dense_terms": {"layers_ms": terms[0][0], "macs": terms[0][1], "activations": terms[0][2]},
    }


def onnx_rows(structure: ModelStructure, space: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Step 4: dense vs the uniform candidate in eager, deploy and ONNX Runtime, one run per batch size."""
    pruned = apply_plan(structure.model, _plan(structure, space.uniform(1.0))).eval()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: Path(tmp) / f"{name}.onnx" for name in ("dense", "pruned")}
        export_onnx(structure.model, structure.input_shape, paths["dense"])
        export_onnx(pruned, structure.input_shape, paths["pruned"])
        return compare_latency(structure.model, pruned, structure.input_shape, batch_sizes=BATCHES,
                               rounds=args.rounds, threads=args.threads, max_time_s=None,
                               pruned_onnx=paths["pruned"], dense_onnx=paths["dense"])  # fmt: skip


def _plan(structure: ModelStructure, counts: dict[str, int]) -> Any:
    from autoprune.engine.plan import PrunePlan

    return PrunePlan(input_shape=structure.input_shape, channels={g.name: g.channels for g in structure.groups},
                     kept={g.name: list(range(counts.get(g.name, g.channels))) for g in structure.groups})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=18, help="spread: a third uniform, the rest random")
    parser.add_argument("--calibrate", type=int, default=12, help="candidates of the table's own calibration")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="latency_calibration", help="file stem of the results")
    parser.add_argument("--note", default="", help="conditions worth recording (e.g. other jobs on the machine)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for key in args.shapes:
        shape = SHAPES[key]
        torch.manual_seed(args.seed)
        structure = ModelStructure(build_model("resnet20", num_classes=10, in_channels=shape[1]).eval(), shape)
        space = load_space("resnet20", structure)
        rows = []
        for batch in BATCHES:
            rows.append(calibration_rows(structure, space.choices, args, batch))
            print(json.dumps({"shape": key, "batch": batch, "mape_pct": rows[-1]["mape_pct"]}), flush=True)
        results[key] = {"calibration": rows, "onnxruntime": onnx_rows(structure, space, args)}
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": "resnet20 (random weights), choices of the bundled space search_spaces/resnet20.yaml",
        "form": FORM, "threads": args.threads, "rounds": args.rounds, "seed": args.seed,
        "candidates": args.candidates, "calibrate": args.calibrate, "note": args.note,
        "torch": torch.__version__, "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        "wall_s": round(time.perf_counter() - started, 1), "date": time.strftime("%Y-%m-%d %H:%M"),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    (args.out / f"{args.name}.md").write_text(_markdown(meta, results))


def _markdown(meta: dict[str, Any], results: dict[str, Any]) -> str:
    load = "; ".join(f"{w}: {', '.join(f'{x:.2f}' for x in meta[f'load_average_{w}'])}" for w in ("before", "after"))
    lines = [
        f"# Calibrated latency table vs interleaved measurement, ResNet-20 ({meta['threads']} CPU threads, "
        f"{meta['form']} form)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']} ({meta['cpu_count']} CPUs), torch {meta['torch']}, {meta['date']}, "
        f"{meta['wall_s']} s  ",
        f"Load average (1, 5, 15 min) {load}" + (f"  \nNote: {meta['note']}" if meta["note"] else ""),
        "",
        f"Spread: {meta['candidates']} candidates (a third uniform, the rest a random choice per group, seed "
        f"{meta['seed']}) timed with the dense model in one interleaved run ({meta['rounds']} rounds); fit on "
        "the odd-numbered half and the dense model, evaluated on the other half. **Own run**: the table's "
        f"calibration from `build_latency_table(..., calibrate={meta['calibrate']})`, measured in its own run "
        "(what a search uses). MAPE: mean absolute percentage error of the predicted latency ratio to dense.",
        "",
        "| input | batch | measured ratio range | median IQR of a ratio | MAPE table (eval half) | MAPE calibrated on "
        "fit half (eval half) | MAPE calibrated, own run (eval half) | own run: layer scale, ms per GMAC, ms per M "
        "activations, fixed ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, res in results.items():
        for row in res["calibration"]:
            m, c = row["mape_pct"], row["own_calibration"]
            lines.append(
                f"| {key} | {row['batch_size']} | {row['measured_ratio_range'][0]:.3f}–"
                f"{row['measured_ratio_range'][1]:.3f} | {row['median_ratio_iqr']:.3f} | "
                f"{m['table/eval_half']:.1f}% | {m['calibrated_half/eval_half']:.1f}% | "
                f"{m['calibrated_own_run/eval_half']:.1f}% | {c['layer_scale']:.3f}, {c['ms_per_mac'] * 1e9:.3f}, "
                f"{c['ms_per_activation'] * 1e6:.3f}, {c['fixed_ms']:.3f} |"
            )
    lines += ["", "## ONNX Runtime beside PyTorch (dense vs the uniform candidate at 50% MACs)", "",
              "One interleaved run per batch size holds all six (eager, deploy form, ONNX Runtime; dense and "
              "pruned); median ms [IQR], ratio = median of per-round ratios.", "",
              "| input | batch | runtime | dense ms | pruned ms | ratio |", "|---|---|---|---|---|---|"]  # fmt: skip
    for key, res in results.items():
        ort = res["onnxruntime"]
        for form, runs in (("eager", ort["latency"]["eager"]), ("deploy", ort["latency"]["deploy"]),
                           ("onnxruntime", ort["onnxruntime"]["runs"])):  # fmt: skip
            for run in runs:
                d, p, r = run["dense"], run["pruned"], run["ratio"]
                lines.append(f"| {key} | {run['batch_size']} | {form} | {d['median_ms']:.3f} [{d['iqr_ms']:.3f}] | "
                             f"{p['median_ms']:.3f} [{p['iqr_ms']:.3f}] | {r['median']:.3f} [{r['iqr']:.3f}] |")
    lines += ["", f"Protocol: {results[next(iter(results))]['onnxruntime']['latency']['protocol']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
