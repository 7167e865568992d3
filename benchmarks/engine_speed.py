"""Does pruning really speed things up? Latency ratio vs MACs ratio on CPU.

ResNet-20 (CIFAR shape 3x32x32 by default, ``--shape 1 28 28`` for Fashion-MNIST), 50% of the dense MACs:
- structured (channel) pruning with channel rounding 1, 4, 8 and 16, uniform (local) and global (round 8);
- the same in channels-last, and in the deploy form (``optimize_for_inference``: BatchNorm folded,
  channels-last), each compared with the dense model in the same form;
- mask granularities (kernel, fine), which keep dense shapes.
Latency: one interleaved run per batch size (1, 64, 128) holding every model, dense forms included
(``autoprune.metrics.measure_interleaved``: each model once per round, the order rotated each round);
each latency is a median over rounds with its IQR, each ratio the median of the per-round ratios to the
dense model of the same form, fixed threads.
"Efficiency" = achieved speedup / ideal speedup, where ideal = dense MACs / pruned MACs.

Run:  .venv/bin/python benchmarks/engine_speed.py [--threads 2] [--rounds 15] [--shape 1 28 28 --checkpoint DENSE.pt]
      [--name engine_speed_fmnist] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from autoprune.engine.deploy import optimize_for_inference
from autoprune.engine.pruner import PruneConfig
from autoprune.metrics import PROTOCOL, count_cost, measure_interleaved, ratio
from autoprune.models import build_model, load_checkpoint_into
from autoprune.pipelines.prune import prune

BATCHES = (1, 64, 128)


def repeats_at(batch: int) -> int:
    """Forward passes per model and round (a round's time is their mean): batch-1 passes are too short alone."""
    return 10 if batch == 1 else 1


def interleaved(models: dict[str, torch.nn.Module], variants: dict[str, tuple[torch.nn.Module, int, str, str]],
                shape: tuple[int, ...], batch: int, threads: int, rounds: int) -> dict[str, Any]:  # fmt: skip
    """One interleaved run over every model: each one's latency stats, and each variant's ratio to its dense model."""
    stats = measure_interleaved(models, shape, batch_size=batch, rounds=rounds, warmup=3, repeats=repeats_at(batch),
                                threads=threads)  # fmt: skip
    return {"stats": stats, "ratios": {name: ratio(stats, name, ref) for name, (_, _, _, ref) in variants.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=15, help="rounds of the interleaved run per batch size")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--shape", type=int, nargs=3, default=[3, 32, 32], metavar=("C", "H", "W"))
    parser.add_argument("--checkpoint", type=Path, help="trained ResNet-20 weights (default: random weights)")
    parser.add_argument("--name", default="engine_speed", help="results file stem")
    args = parser.parse_args()
    torch.manual_seed(0)
    shape = (1, *args.shape)
    dense = build_model("resnet20", num_classes=10, in_channels=shape[1]).eval()
    if args.checkpoint is not None:
        load_checkpoint_into(dense, args.checkpoint)
    dense_cost = count_cost(dense, shape)
    # name -> (model, MACs, widths, the dense model it is compared with)
    variants: dict[str, tuple[torch.nn.Module, int, str, str]] = {}
    for scope, rounds in (("local", (1, 4, 8, 16)), ("global", (8,))):
        for round_to in rounds:
            pruned, plan = prune(dense, shape, PruneConfig(target_macs=args.target, round_to=round_to,
                                                           scope=scope))  # type: ignore[arg-type]
            widths = str(sorted({len(k) for k in plan.kept.values()}))
            name = f"channel, {scope}, round_to={round_to}"
            variants[name] = (pruned, count_cost(pruned, shape).macs, widths, "dense")
    for name in ("channel, local, round_to=8", "channel, global, round_to=8"):
        model, macs, widths, _ = variants[name]
        variants[f"{name}, channels_last"] = (
            copy.deepcopy(model).to(memory_format=torch.channels_last), macs, widths, "dense, channels_last")
        variants[f"{name}, deploy form"] = (optimize_for_inference(model), macs, widths, "dense, deploy form")
    for gran in ("kernel", "fine"):
        masked, _ = prune(dense, shape, PruneConfig(target_macs=args.target, granularity=gran))
        variants[f"{gran} masks (effective MACs)"] = (masked, count_cost(masked, shape).effective_macs, "dense",
                                                      "dense")
    models = {"dense": dense, "dense, channels_last": copy.deepcopy(dense).to(memory_format=torch.channels_last),
              "dense, deploy form": optimize_for_inference(dense)}
    models.update({name: v[0] for name, v in variants.items()})
    measured = {b: interleaved(models, variants, shape, b, args.threads, args.rounds) for b in BATCHES}
    rows = []
    for name, (_, macs, widths, ref) in variants.items():
        row: dict[str, object] = {"variant": name, "macs_ratio": macs / dense_cost.macs, "widths": widths}
        for b in BATCHES:
            stats, r = measured[b]["stats"], measured[b]["ratios"][name]
            row[f"latency_ms_b{b}"] = stats[name].median_ms
            row[f"latency_iqr_ms_b{b}"] = stats[name].iqr_ms
            row[f"dense_latency_ms_b{b}"] = stats[ref].median_ms
            row[f"latency_ratio_b{b}"] = r.median  # median of the per-round ratios to its dense model
            row[f"latency_ratio_iqr_b{b}"] = r.iqr
            row[f"efficiency_b{b}"] = (1 / r.median) / (dense_cost.macs / macs)
        rows.append(row)
        print(json.dumps(row), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": f"resnet20 ({'x'.join(map(str, args.shape))} input, "
        + (f"weights {args.checkpoint})" if args.checkpoint else "random weights: latency does not depend on values)"),
        "dense_latency_ms": {f"b{b}": {k: round(measured[b]["stats"][k].median_ms, 3) for k in (
            "dense", "dense, channels_last", "dense, deploy form")} for b in BATCHES},
        "target_macs": args.target,
        "threads": measured[BATCHES[0]]["stats"]["dense"].threads,
        "latency": {f"b{b}": {"batch_size": b, "rounds": measured[b]["stats"]["dense"].rounds, "warmup": 3,
                              "repeats": repeats_at(b), "threads": measured[b]["stats"]["dense"].threads,
                              "models": len(models)} for b in BATCHES},
        "protocol": f"{PROTOCOL}; one run per batch size over all {len(models)} models, {args.rounds} rounds, a "
        "round's time the mean of 10 passes at batch 1 (one pass at 64 and 128)",
        "torch": torch.__version__,
        "machine": platform.platform(),
        "processor": platform.processor(),
        "date": time.strftime("%Y-%m-%d"),
    }
    (args.out / f"{args.name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        f"# Latency vs MACs, ResNet-20 ({'x'.join(map(str, args.shape))}) at {args.target:.0%} MACs "
        f"({args.threads} CPU threads)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}, torch {meta['torch']}, {meta['date']}",
        "",
        "| variant | widths | MACs ratio | latency ratio b1 [IQR] | b64 | b128 | efficiency b1 | b64 | b128 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['widths']} | {r['macs_ratio']:.3f} | "
            + " | ".join(f"{r[f'latency_ratio_b{b}']:.3f} [{r[f'latency_ratio_iqr_b{b}']:.3f}]" for b in BATCHES)
            + " | "
            + " | ".join(f"{r[f'efficiency_b{b}']:.2f}" for b in BATCHES)
            + " |"
        )
    lines += ["", "Efficiency = (dense latency / pruned latency) / (dense MACs / pruned MACs); 1.0 is the ideal "
              "speedup. Mask rows use effective (non-zero) MACs: dense kernels do not skip zeros. "
              "channels_last and deploy-form rows are compared with the dense model in the same form. "
              "Dense latency (ms) per form and batch: " + json.dumps(meta["dense_latency_ms"]),
              "", f"Protocol: {meta['protocol']}."]
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
