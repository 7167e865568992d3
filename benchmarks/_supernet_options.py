"""Command-line options shared by the benchmarks that run searchers over a trained Fashion-MNIST supernet."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_supernet_options(p: argparse.ArgumentParser) -> None:
    """Add ``--supernet``, ``--data-dir``, ``--bn-batches``, ``--seed``, ``--threads`` and ``--out``."""
    p.add_argument("--supernet", type=Path, required=True, help="supernet.pt written by `autoprune supernet`")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/autoprune-fmnist"))
    p.add_argument("--bn-batches", type=int, default=5, help="batches of adaptive BatchNorm per candidate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))


def add_stage_options(p: argparse.ArgumentParser, *, name_help: str) -> None:
    """The issue-16 benchmarks' shared options: model, data, the stages' work folder, threads and outputs."""
    p.add_argument("--model", default="vgg_small")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/autoprune-fmnist"))
    p.add_argument("--work", type=Path, required=True,
                   help="folder of the stages' run folders (benchmarks/layer_ratios.py; kept, resumable)")
    p.add_argument("--space", help="search space (YAML, bundled name or 'auto'); default: the model's own")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="arithmetic of every training stage (`autoprune --precision`); evaluation is float32")
    p.add_argument("--name", help=f"results file stem (default: {name_help})")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--quick", action="store_true", help="digits, tiny settings: checks that the script runs")
