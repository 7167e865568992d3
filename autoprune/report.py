"""``report.json``: the versioned, machine-readable result of every autoprune command.

Its fields, every command's, are documented in one place: :data:`autoprune.report_schema.FIELDS`
(rendered to ``docs/report_schema.md``). :class:`RunReport` collects a command's results and writes them.

Latency follows one protocol (:func:`autoprune.metrics.measure_interleaved`): the dense and the pruned
model are timed in one interleaved run, in eager and deploy form (and in ONNX Runtime when ``model.onnx``
was exported), at batch 1 and at a throughput batch; their ratios come from that run
(:meth:`RunReport.measure_latency`, :func:`compare_latency`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import platform
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune._device import model_device
from autoprune._jsonfile import write_json_atomic
from autoprune.engine.deploy import DeployWarning, optimize_for_inference
from autoprune.errors import ExportError
from autoprune.metrics import (
    PROTOCOL,
    Accuracy,
    count_cost,
    evaluate_accuracy,
    measure_interleaved,
    onnxruntime_runner,
    ratio,
)
from autoprune.report_schema import SCHEMA_VERSION

#: The throughput batch every report times beside batch 1.
THROUGHPUT_BATCH = 64
_SHOWN = ("median_ms", "q1_ms", "q3_ms", "iqr_ms")


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


def recalibrated(model: nn.Module, calibration: Any, test_loader: Any, *,
                 device: torch.device | str = "cpu") -> dict[str, Any] | None:  # fmt: skip
    """The dense model scored the way pruned sub-networks are: a copy with adaptive BatchNorm on ``calibration``.

    A model's own running statistics can be stale (torchvision's BatchNorm momentum is 0.01), which would
    make pruning look like a gain; the report gives both. ``None`` for a model without BatchNorm.
    """
    from autoprune.supernet.bn import adaptive_bn

    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return None
    batches = list(calibration)
    twin = copy.deepcopy(model).to(device)
    used = adaptive_bn(twin, batches, len(batches), device=device)
    acc = evaluate_accuracy(twin, test_loader, device=device)
    n = len(test_loader.dataset)
    return {"accuracy": acc.top1, "accuracy_se": binomial_se(acc.top1, n), "bn_batches": used}


def model_metrics(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    test_loader: Any | None = None,
    device: torch.device | str = "cpu",
    latency_batch_size: int = 1,
    latency_repeats: int = 30,
    effective: bool = False,
    accuracy: Accuracy | None = None,
) -> dict[str, Any]:
    """The metrics object of a report: accuracy (if a test loader is given), MACs, params, latency.

    ``accuracy``: the test accuracy already measured on ``test_loader`` (e.g. per sample, for a paired
    comparison), used instead of evaluating the model again.

    Latency: the model in eager and deploy form, interleaved (one model alone; a dense/pruned pair is
    timed together by :meth:`RunReport.measure_latency`, which replaces these figures).
    """
    cost = count_cost(model, input_shape)
    out: dict[str, Any] = {}
    if test_loader is not None:
        acc = evaluate_accuracy(model, test_loader, device=device) if accuracy is None else accuracy
        n = len(test_loader.dataset) if hasattr(test_loader, "dataset") else 0
        out.update(accuracy=acc.top1, top5=acc.top5)
        if n:
            out.update(accuracy_se=binomial_se(acc.top1, n), test_samples=n)
    out.update(macs=cost.macs, params=cost.params)
    if effective:
        out.update(effective_macs=cost.effective_macs, nonzero_params=cost.nonzero_params)
    stats = measure_interleaved({"eager": model, "deploy": _deploy(model)}, input_shape, batch_size=latency_batch_size,
                                rounds=latency_repeats)  # fmt: skip
    out.update(latency_ms=stats["eager"].median_ms, latency_batch_size=latency_batch_size,
               latency_threads=stats["eager"].threads, deploy_latency_ms=stats["deploy"].median_ms)
    return out


def _deploy(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():  # a model torch.fx cannot trace is timed with its BatchNorm: still honest
        warnings.simplefilter("ignore", DeployWarning)
        return optimize_for_inference(model)


def compare_latency(
    dense: nn.Module | None,
    pruned: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch_sizes: Sequence[int] = (1, THROUGHPUT_BATCH),
    rounds: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    max_time_s: float | None = 10.0,
    pruned_onnx: Path | None = None,
    dense_onnx: Path | None = None,
    others: Mapping[str, nn.Module] | None = None,
) -> dict[str, Any]:
    """Dense and pruned latency by the interleaved protocol: one run per batch size holds every form.

    Each run times the dense and the pruned model in eager and deploy form (BatchNorm folded,
    channels-last) and, given ONNX files, in ONNX Runtime on the CPU with the same threads; ratios are
    pruned over dense of the same form, per round of that run.

    Args:
        dense: The dense model (None: the pruned model alone, no ratios).
        pruned: The pruned model.
        input_shape: ``(N, C, H, W)`` of one batch (N is replaced by each batch size).
        batch_sizes: Batch sizes, one interleaved run each (batch 1 and a throughput batch).
        rounds: Rounds per run; warmup: untimed passes per model first; threads: CPU threads.
        max_time_s: Fewer rounds (at least 3) where a run's timed passes would take longer than this.
        pruned_onnx: The exported ``model.onnx`` (None: no ONNX Runtime figures).
        dense_onnx: The dense model as ONNX (None: ONNX Runtime times the pruned model alone).
        others: More models timed in the same runs (eager and deploy form), e.g. a search's uniform
            candidate beside its winner; each row holds them under their names.

    Returns:
        ``{"latency": ...}`` and, with ``pruned_onnx``, ``{"onnxruntime": ...}`` (see ``docs/report_schema.md``).
    """
    torch_forms = {"eager": (dense, pruned), "deploy": (None if dense is None else _deploy(dense), _deploy(pruned))}
    extra = dict(others or {})
    clash = {"dense", "pruned"} & set(extra)
    if clash:
        raise ValueError(f"others={sorted(clash)}: 'dense' and 'pruned' are taken; name the extra models otherwise")
    models: dict[str, Any] = {}
    for form, (d, p) in torch_forms.items():
        models.update({f"{form}/pruned": p, **({} if d is None else {f"{form}/dense": d})})
        models.update({f"{form}/{name}": (m if form == "eager" else _deploy(m)) for name, m in extra.items()})
    if pruned_onnx is not None:
        models["onnxruntime/pruned"] = onnxruntime_runner(pruned_onnx, threads=threads)
        if dense_onnx is not None:
            models["onnxruntime/dense"] = onnxruntime_runner(dense_onnx, threads=threads)
    runs: dict[str, list[dict[str, Any]]] = {"eager": [], "deploy": [], "onnxruntime": []}
    used_threads = 0
    for batch in batch_sizes:
        stats = measure_interleaved(models, input_shape, batch_size=batch, rounds=rounds, warmup=warmup,
                                    threads=threads, max_time_s=max_time_s)  # fmt: skip
        used_threads = stats["eager/pruned"].threads
        for form in runs:
            if f"{form}/pruned" not in stats:
                continue
            row: dict[str, Any] = {"batch_size": batch, "rounds": stats[f"{form}/pruned"].rounds}
            for who in ("dense", "pruned", *extra):
                if f"{form}/{who}" in stats:
                    row[who] = {k: v for k, v in stats[f"{form}/{who}"].to_dict().items() if k in _SHOWN}
            if f"{form}/dense" in stats:
                row["ratio"] = ratio(stats, f"{form}/pruned", f"{form}/dense").to_dict()
            runs[form].append(row)
    out: dict[str, Any] = {"latency": {"protocol": PROTOCOL, "warmup": warmup, "threads": used_threads,
                                       "device": str(model_device(pruned)),
                                       "eager": runs["eager"], "deploy": runs["deploy"]}}  # fmt: skip
    if pruned_onnx is not None:
        out["onnxruntime"] = {"providers": ["CPUExecutionProvider"], "threads": used_threads,
                              "dense": dense_onnx is not None, "runs": runs["onnxruntime"]}  # fmt: skip
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

    def measure_latency(
        self,
        dense: nn.Module | None,
        pruned: nn.Module,
        input_shape: tuple[int, ...],
        *,
        onnx: Path | None = None,
        batch_sizes: Sequence[int] = (1, THROUGHPUT_BATCH),
        rounds: int = 20,
        threads: int | None = None,
        others: Mapping[str, nn.Module] | None = None,
    ) -> None:
        """Time ``dense`` and ``pruned`` together (:func:`compare_latency`) into ``latency`` and ``onnxruntime``.

        The metrics objects' ``latency_ms`` and ``deploy_latency_ms`` (``dense``, ``pruned``) are replaced
        by the medians of the first batch size's run, so ``latency_ratio`` and ``deploy_latency_ratio`` come
        from one run; ``latency`` holds every run's quartiles and per-round ratios. ``onnx``: the exported
        ``model.onnx``; the dense model is exported to a temporary file, so ONNX Runtime's ratio comes from
        one run too (if that export fails, ONNX Runtime times the pruned model alone). ``others``: more
        models timed in the same runs; the metrics object of the same name (e.g. ``uniform``) takes their
        figures like ``pruned`` does.
        """
        with tempfile.TemporaryDirectory() as tmp:
            dense_onnx = None
            if onnx is not None and dense is not None:
                from autoprune.engine.export import export_onnx

                dense_onnx = Path(tmp) / "dense.onnx"
                try:
                    export_onnx(copy.deepcopy(dense), input_shape, dense_onnx, check=False)
                except Exception:
                    dense_onnx = None
            block = compare_latency(dense, pruned, input_shape, batch_sizes=batch_sizes, rounds=rounds,
                                    threads=threads, pruned_onnx=onnx, dense_onnx=dense_onnx,
                                    others=others)  # fmt: skip
        self.data.update(block)
        first = {form: block["latency"][form][0] for form in ("eager", "deploy")}
        for who in ("dense", "pruned", *(others or {})):
            metrics = self.data.get(who)
            if metrics is not None and who in first["eager"]:
                metrics.update(latency_ms=first["eager"][who]["median_ms"],
                               deploy_latency_ms=first["deploy"][who]["median_ms"],
                               latency_batch_size=first["eager"]["batch_size"],
                               latency_threads=block["latency"]["threads"])  # fmt: skip

    def compare(self) -> None:
        """Fill ``macs_ratio``, ``params_ratio`` and ``latency_ratio`` from ``dense`` and ``pruned``.

        After :meth:`measure_latency` both latencies come from one interleaved run, and so do the ratios.
        """
        dense, pruned = self.data.get("dense"), self.data.get("pruned")
        if not dense or not pruned:
            return
        for key, name in (("macs", "macs_ratio"), ("params", "params_ratio"), ("latency_ms", "latency_ratio"),
                          ("deploy_latency_ms", "deploy_latency_ratio")):
            if dense.get(key) and pruned.get(key) is not None:
                self.data[name] = pruned[key] / dense[key]

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
            "status": "onnx_check_failed" if "onnx_error" in self.data else "ok",
            **self.data,
            "config": {**self.data.get("config", {}), "cli": json.loads(json.dumps(self.cli, default=str))},
            "environment": environment(),
        }

    def write(self) -> Path:
        """Write ``report.json``; then raise :class:`ExportError` if the ONNX check failed (``onnx_error``)."""
        path = write_json_atomic(self.out_dir / "report.json", self.to_dict())
        if "onnx_error" in self.data:
            raise ExportError(f"{self.data['onnx_error']} (everything else is written: {path}; model.onnx was removed)")
        return path
