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
