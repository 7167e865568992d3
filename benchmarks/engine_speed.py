"""Does pruning really speed things up? Latency ratio vs MACs ratio on CPU.

ResNet-20 (CIFAR shape 3x32x32), 50% of the dense MACs:
- structured (channel) pruning with channel rounding 1, 4, 8 and 16;
- mask granularities (kernel, fine), which keep dense shapes.
Latency: median of repeated forward passes after warm-up, batch 1, 64 and 128, fixed threads.
"Efficiency" = achieved speedup / ideal speedup, where ideal = dense MACs / pruned MACs.

Run:  .venv/bin/python benchmarks/engine_speed.py [--threads 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from autoprune.engine.pruner import PruneConfig, prune
from autoprune.metrics import count_cost, measure_latency
from autoprune.models import build_model

BATCHES = (1, 64, 128)


def latency(model: torch.nn.Module, shape: tuple[int, ...], batch: int, threads: int,
            channels_last: bool = False) -> float:
    m = model.eval()
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    repeats = 60 if batch == 1 else 15
    # interleaving-free but repeated: take the best median of 3 runs to damp machine noise
    return min(
        measure_latency(m, shape, batch_size=batch, warmup=5, repeats=repeats, threads=threads).median_ms
        for _ in range(3)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.manual_seed(0)
    shape = (1, 3, 32, 32)
    dense = build_model("resnet20", num_classes=10, in_channels=3).eval()
    dense_cost = count_cost(dense, shape)
    rows = []

    def record(label: str, model: torch.nn.Module, macs: int, widths: str, channels_last: bool = False) -> None:
        row: dict[str, object] = {"variant": label, "macs_ratio": macs / dense_cost.macs, "widths": widths,
                                  "channels_last": channels_last}
        for b in BATCHES:
            d = latency(dense, shape, b, args.threads, channels_last)
            p = latency(model, shape, b, args.threads, channels_last)
            row[f"latency_ms_b{b}"] = p
            row[f"dense_latency_ms_b{b}"] = d
            row[f"latency_ratio_b{b}"] = p / d
            row[f"efficiency_b{b}"] = (d / p) / (dense_cost.macs / macs)
        rows.append(row)
        print(json.dumps(row), flush=True)

    for round_to in (1, 4, 8, 16):
        pruned, plan = prune(dense, shape, PruneConfig(target_macs=args.target, round_to=round_to))
        widths = sorted({len(k) for k in plan.kept.values()})
        record(f"channel, round_to={round_to}", pruned, count_cost(pruned, shape).macs, str(widths))
    pruned8, plan8 = prune(dense, shape, PruneConfig(target_macs=args.target, round_to=8))
    record("channel, round_to=8, channels_last", pruned8, count_cost(pruned8, shape).macs,
           str(sorted({len(k) for k in plan8.kept.values()})), channels_last=True)
    for gran in ("kernel", "fine"):
        masked, _ = prune(dense, shape, PruneConfig(target_macs=args.target, granularity=gran))
        record(f"{gran} masks (effective MACs)", masked, count_cost(masked, shape).effective_macs, "dense")

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": "resnet20 (3x32x32 input, random weights: latency does not depend on values)",
        "target_macs": args.target,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.platform(),
        "processor": platform.processor(),
        "date": time.strftime("%Y-%m-%d"),
    }
    (args.out / "engine_speed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        f"# Latency vs MACs, ResNet-20 at {args.target:.0%} MACs ({args.threads} CPU threads)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}, torch {meta['torch']}, {meta['date']}",
        "",
        "| variant | widths | MACs ratio | latency ratio b1 | b64 | b128 | efficiency b1 | b64 | b128 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['widths']} | {r['macs_ratio']:.3f} | "
            + " | ".join(f"{r[f'latency_ratio_b{b}']:.3f}" for b in BATCHES)
            + " | "
            + " | ".join(f"{r[f'efficiency_b{b}']:.2f}" for b in BATCHES)
            + " |"
        )
    lines += ["", "Efficiency = (dense latency / pruned latency) / (dense MACs / pruned MACs); 1.0 is the ideal "
              "speedup. Mask rows use effective (non-zero) MACs: dense kernels do not skip zeros."]
    (args.out / "engine_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
