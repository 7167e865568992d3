"""Training-step time of ``--precision fp32`` vs ``bf16``, measured interleaved in one process.

One SGD step (forward, loss, backward, update) of a model on a batch of random images, through
:mod:`autoprune.precision` exactly as :func:`autoprune.training.train` runs it. The precisions alternate step
by step (after warm-up), so machine noise hits both alike; the median per precision and their ratio are
written to ``--out/precision_speed.json`` / ``.md``.

    python benchmarks/precision_speed.py --models resnet56 vgg_small --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from autoprune.models import build_model
from autoprune.precision import PRECISIONS, autocast, prepare_input, training_layout
from autoprune.training import make_sgd


def step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> float:
    """Seconds of one training step in ``precision`` (the model is in that precision's layout)."""
    optimizer = make_sgd(model, 0.01, 5e-4)
    xx = prepare_input(x, precision)
    start = time.perf_counter()
    with autocast(precision, "cpu"):
        loss = F.cross_entropy(model(xx), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet56", "vgg_small"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image", type=int, nargs=2, default=[1, 28], metavar=("CHANNELS", "SIDE"))
    p.add_argument("--steps", type=int, default=20, help="measured steps per precision (after 3 warm-up)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--name", default="precision_speed", help="results file stem (e.g. one per CPU kind)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    channels, side = a.image
    x = torch.randn(a.batch_size, channels, side, side)
    y = torch.randint(0, 10, (a.batch_size,))
    rows = []
    for name in a.models:
        models = {pr: build_model(name, num_classes=10, in_channels=channels) for pr in PRECISIONS}
        times: dict[str, list[float]] = {pr: [] for pr in PRECISIONS}
        for i in range(3 + a.steps):
            for pr in PRECISIONS:
                with training_layout(models[pr], pr):
                    t = step_seconds(models[pr], x, y, pr)
                if i >= 3:
                    times[pr].append(t)
        med = {pr: statistics.median(v) for pr, v in times.items()}
        rows.append({"model": name, "median_s": med, "speedup_bf16": med["fp32"] / med["bf16"],
                     "steps": a.steps})
        print(f"{name}: fp32 {med['fp32'] * 1e3:.0f} ms, bf16 {med['bf16'] * 1e3:.0f} ms per step, "
              f"{med['fp32'] / med['bf16']:.2f}x", flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    result = {"rows": rows, "batch_size": a.batch_size, "image": a.image, "threads": a.threads, "cpu": cpu,
              "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
              "torch": torch.__version__, "machine": platform.platform(), "cpus": os.cpu_count(),
              "command": "python benchmarks/precision_speed.py " + " ".join(
                  f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                  for k, v in vars(a).items() if k != "out" and (k != "name" or v != "precision_speed"))}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.name}.json").write_text(json.dumps(result, indent=1))
    lines = ["# Training-step time: fp32 vs bf16 mixed precision", "",
             f"One SGD step, batch {a.batch_size} of {channels}×{side}×{side}, {a.threads} torch threads, precisions "
             f"interleaved step by step, median of {a.steps}. CPU: {cpu} (AMX-BF16: {result['amx_bf16']}, "
             f"AVX512-BF16: {result['avx512_bf16']}); torch {torch.__version__}.", "",
             "| model | fp32 (ms/step) | bf16 (ms/step) | bf16 speed-up |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['median_s']['fp32'] * 1e3:.0f} | {r['median_s']['bf16'] * 1e3:.0f} | "
              f"{r['speedup_bf16']:.2f}× |" for r in rows]
    lines += ["", f"Command: `{result['command']}`; {result['machine']}, {result['cpus']} CPUs.", ""]
    (a.out / f"{a.name}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
