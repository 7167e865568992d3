"""``report.json``: the versioned, machine-readable result of every autoprune command.

Its fields, every command's, are documented in one place: :data:`autoprune.report_schema.FIELDS`
(rendered to ``docs/report_schema.md``). :class:`RunReport` collects a command's results and writes them.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune._jsonfile import write_json_atomic
from autoprune.engine.deploy import DeployWarning, optimize_for_inference
from autoprune.metrics import count_cost, evaluate_accuracy, measure_latency
from autoprune.report_schema import SCHEMA_VERSION


def environment() -> dict[str, Any]:
    """Library versions, threads and machine, for reproducibility."""
    import numpy
    import torchvision

    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": numpy.__version__}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("torch-pruning", "gymnasium", "stable-baselines3", "optuna"):
        # the distribution's metadata: torch_pruning.__version__ is stale in 1.6.1
        with contextlib.suppress(PackageNotFoundError):
            versions[dist] = version(dist)
    from autoprune import __version__

    return {
        "autoprune": __version__,
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` samples."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def model_metrics(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    test_loader: Any | None = None,
    device: torch.device | str = "cpu",
    latency_batch_size: int = 1,
    latency_repeats: int = 30,
    effective: bool = False,
) -> dict[str, Any]:
    """The metrics object of a report: accuracy (if a test loader is given), MACs, params, latency."""
    cost = count_cost(model, input_shape)
    out: dict[str, Any] = {}
    if test_loader is not None:
        acc = evaluate_accuracy(model, test_loader, device=device)
        n = len(test_loader.dataset) if hasattr(test_loader, "dataset") else 0
        out.update(accuracy=acc.top1, top5=acc.top5)
        if n:
            out.update(accuracy_se=binomial_se(acc.top1, n), test_samples=n)
    out.update(macs=cost.macs, params=cost.params)
    if effective:
        out.update(effective_macs=cost.effective_macs, nonzero_params=cost.nonzero_params)
    lat = measure_latency(model, input_shape, batch_size=latency_batch_size, repeats=latency_repeats)
    out.update(latency_ms=lat.median_ms, latency_batch_size=latency_batch_size, latency_threads=lat.threads)
    with warnings.catch_warnings():  # a model torch.fx cannot trace is timed with its BatchNorm: still honest
        warnings.simplefilter("ignore", DeployWarning)
        deploy = optimize_for_inference(model)
    out["deploy_latency_ms"] = measure_latency(deploy, input_shape, batch_size=latency_batch_size,
                                               repeats=latency_repeats).median_ms
    return out


@dataclass
class RunReport:
    """Collects a command's results and writes ``report.json`` atomically."""

    command: str
    model: str
    dataset: str
    seed: int
    out_dir: Path
    started: float = field(default_factory=time.perf_counter)
    data: dict[str, Any] = field(default_factory=dict)
    #: Every command-line option as given (``config.cli``), and the data's shape (top-level fields).
    cli: dict[str, Any] = field(default_factory=dict)
    data_shape: dict[str, Any] = field(default_factory=dict)

    def set(self, **fields: Any) -> None:
        self.data.update(fields)

    def compare(self) -> None:
        """Fill ``macs_ratio``, ``params_ratio`` and ``latency_ratio`` from ``dense`` and ``pruned``."""
        dense, pruned = self.data.get("dense"), self.data.get("pruned")
        if not dense or not pruned:
            return
        for key, ratio in (("macs", "macs_ratio"), ("params", "params_ratio"), ("latency_ms", "latency_ratio"),
                           ("deploy_latency_ms", "deploy_latency_ratio")):
            if dense.get(key) and pruned.get(key) is not None:
                self.data[ratio] = pruned[key] / dense[key]

    def to_dict(self) -> dict[str, Any]:
        self.compare()
        return {
            "schema_version": SCHEMA_VERSION,
            "command": self.command,
            "model": self.model,
            "dataset": self.dataset,
            **self.data_shape,
            "seed": self.seed,
            "wall_time_s": round(time.perf_counter() - self.started, 3),
            "status": "ok",
            **self.data,
            "config": {**self.data.get("config", {}), "cli": json.loads(json.dumps(self.cli, default=str))},
            "environment": environment(),
        }

    def write(self) -> Path:
        return write_json_atomic(self.out_dir / "report.json", self.to_dict())
