"""The one timing protocol: models alternate in rounds, statistics over rounds, ratios within one run.

Timings are noisy (other jobs share the machine): nothing here asserts on how long anything took, only on
what ran when (spies on call order) and on facts that hold by construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import autoprune.metrics.latency as latency
from autoprune.engine.export import export_onnx
from autoprune.metrics import (
    LatencyStats,
    measure_interleaved,
    measure_latency,
    onnxruntime_runner,
    ratio,
)
from autoprune.report import RunReport, compare_latency

SHAPE = (1, 3, 8, 8)


def _net(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)).eval()  # fmt: skip


def _recorder(calls: list[str], name: str) -> Any:
    def run(x: torch.Tensor) -> torch.Tensor:
        calls.append(name)
        return x

    return run


def test_models_alternate_round_robin_with_the_order_rotated_each_round() -> None:
    calls: list[str] = []
    models = {n: _recorder(calls, n) for n in ("a", "b", "c")}
    stats = measure_interleaved(models, SHAPE, rounds=4, warmup=1)
    warmup, timed = calls[:3], calls[3:]
    assert warmup == ["a", "b", "c"]
    assert timed == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert all(sorted(timed[i : i + 3]) == ["a", "b", "c"] for i in range(0, 12, 3))  # each once per round
    assert all(s.rounds == 4 == len(s.samples_ms) for s in stats.values())


def test_two_models_are_never_timed_twice_in_a_row_within_a_round() -> None:
    calls: list[str] = []
    dense, pruned = _net(16), _net(4)
    dense.register_forward_pre_hook(lambda *_: calls.append("dense"))
    pruned.register_forward_pre_hook(lambda *_: calls.append("pruned"))
    measure_interleaved({"dense": dense, "pruned": pruned}, SHAPE, rounds=6, warmup=2, repeats=2)
    timed = calls[4:]  # warm-up: one pass each, twice
    rounds = [timed[i : i + 4] for i in range(0, len(timed), 4)]
    assert len(rounds) == 6
    # repeats=2: each model twice in a row within its turn, then the other; the first alternates per round
    assert [r[0] for r in rounds] == ["dense", "pruned"] * 3
    assert all(r[0] == r[1] != r[2] == r[3] for r in rounds)


def test_statistics_are_over_rounds_and_conditions_are_recorded() -> None:
    before = torch.get_num_threads()
    threads = 2 if before == 1 else 1
    stats = measure_interleaved({"net": _net(8)}, SHAPE, batch_size=3, rounds=9, warmup=1, threads=threads)["net"]
    assert stats.batch_size == 3 and stats.threads == threads and stats.rounds == 9 and stats.warmup == 1
    assert stats.q1_ms <= stats.median_ms <= stats.q3_ms and stats.iqr_ms == pytest.approx(stats.q3_ms - stats.q1_ms)
    assert min(stats.samples_ms) <= stats.p10_ms <= stats.median_ms <= stats.p90_ms <= max(stats.samples_ms)
    assert "samples_ms" not in stats.to_dict() and len(stats.to_dict(samples=True)["samples_ms"]) == 9
    assert torch.get_num_threads() == before  # restored
    with pytest.raises(ValueError):
        measure_interleaved({}, SHAPE)
    with pytest.raises(ValueError):
        measure_interleaved({"net": _net(8)}, SHAPE, rounds=0)


def test_a_model_left_in_training_mode_is_timed_in_eval_and_restored() -> None:
    net = _net(8).train()
    modes: list[bool] = []
    net.register_forward_pre_hook(lambda m, _: modes.append(m.training))
    measure_interleaved({"net": net}, SHAPE, rounds=2, warmup=1)
    assert modes == [False] * 3 and net.training


def _stats(samples: list[float]) -> LatencyStats:
    return LatencyStats(median_ms=0, q1_ms=0, q3_ms=0, iqr_ms=0, p10_ms=0, p90_ms=0, rounds=len(samples), repeats=1,
                        warmup=0, batch_size=1, threads=1, device="cpu", samples_ms=tuple(samples))  # fmt: skip


def test_a_ratio_is_taken_per_round_within_one_run() -> None:
    # the machine slows down 3x over the run: per-round ratios stay 0.5 where medians alone would not say so
    stats = {"dense": _stats([2.0, 4.0, 6.0, 8.0, 10.0]), "pruned": _stats([1.0, 2.0, 3.0, 4.0, 5.0])}
    r = ratio(stats, "pruned", "dense")
    assert r.median == pytest.approx(0.5) and r.iqr == pytest.approx(0.0) and r.rounds == 5 and r.noise == 0
    assert set(r.to_dict()) == {"median", "q1", "q3", "iqr", "noise", "rounds"}
    with pytest.raises(ValueError, match="one interleaved run"):
        ratio({"dense": _stats([1.0, 2.0]), "pruned": _stats([1.0])}, "pruned", "dense")


def test_measure_latency_is_the_one_model_case(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[list[str], int]] = []
    real = latency.measure_interleaved

    def spy(models: Any, shape: Any, **kwargs: Any) -> Any:
        seen.append((list(models), kwargs["rounds"]))
        return real(models, shape, **kwargs)

    monkeypatch.setattr(latency, "measure_interleaved", spy)
    lat = measure_latency(_net(8), SHAPE, repeats=5, warmup=1)
    assert seen == [(["model"], 5)] and lat.rounds == 5


def test_onnxruntime_runs_in_the_same_interleaved_run(tmp_path: Path) -> None:
    net = _net(8)
    export_onnx(net, SHAPE, tmp_path / "m.onnx")
    stats = measure_interleaved({"torch": net, "onnxruntime": onnxruntime_runner(tmp_path / "m.onnx", threads=1)},
                                SHAPE, batch_size=4, rounds=3, warmup=1)  # fmt: skip
    assert stats["onnxruntime"].rounds == stats["torch"].rounds == 3 and stats["onnxruntime"].median_ms > 0
    assert ratio(stats, "onnxruntime", "torch").rounds == 3


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The models of every interleaved run the report starts (each run cut to 3 rounds)."""
    import autoprune.report as report_module

    seen: list[list[str]] = []
    real = report_module.measure_interleaved

    def spy(models: Any, shape: Any, **kwargs: Any) -> Any:
        seen.append(list(models))
        return real(models, shape, **{**kwargs, "rounds": 3})

    monkeypatch.setattr(report_module, "measure_interleaved", spy)
    return seen


def test_the_report_times_dense_and_pruned_together(tmp_path: Path, runs: list[list[str]]) -> None:
    dense, pruned = _net(16), _net(4)
    export_onnx(pruned, SHAPE, tmp_path / "model.onnx")
    report = RunReport("prune", "net", "none", 0, tmp_path)
    report.set(dense={"macs": 2, "latency_ms": 99.0}, pruned={"macs": 1, "latency_ms": 1.0})
    report.measure_latency(dense, pruned, SHAPE, onnx=tmp_path / "model.onnx", batch_sizes=(1, 4))
    # one interleaved run per batch size, holding every form of both models
    assert runs == [["eager/pruned", "eager/dense", "deploy/pruned", "deploy/dense", "onnxruntime/pruned",
                     "onnxruntime/dense"]] * 2  # fmt: skip
    data = report.to_dict()
    block = data["latency"]
    assert [row["batch_size"] for row in block["deploy"]] == [1, 4] and block["threads"] >= 1
    first = block["eager"][0]
    assert data["dense"]["latency_ms"] == first["dense"]["median_ms"]  # replaced by the interleaved run
    assert data["latency_ratio"] == pytest.approx(first["pruned"]["median_ms"] / first["dense"]["median_ms"])
    assert data["deploy_latency_ratio"] == pytest.approx(
        block["deploy"][0]["pruned"]["median_ms"] / block["deploy"][0]["dense"]["median_ms"])
    assert set(first["ratio"]) == {"median", "q1", "q3", "iqr", "noise", "rounds"}
    onnx = data["onnxruntime"]
    assert onnx["dense"] is True and [r["batch_size"] for r in onnx["runs"]] == [1, 4]


def test_other_models_are_timed_in_the_same_runs(tmp_path: Path, runs: list[list[str]]) -> None:
    """A search's uniform candidate is timed beside its winner, and its metrics take that run's medians."""
    report = RunReport("search", "net", "none", 0, tmp_path)
    report.set(dense={"macs": 2}, pruned={"macs": 1}, uniform={"macs": 1, "latency_ms": 99.0})
    report.measure_latency(_net(16), _net(4), SHAPE, batch_sizes=(1,), others={"uniform": _net(6)})
    assert runs == [["eager/pruned", "eager/dense", "eager/uniform", "deploy/pruned", "deploy/dense",
                     "deploy/uniform"]]  # fmt: skip
    data = report.to_dict()
    first = data["latency"]["eager"][0]
    assert data["uniform"]["latency_ms"] == first["uniform"]["median_ms"] != 99.0
    assert data["uniform"]["deploy_latency_ms"] == data["latency"]["deploy"][0]["uniform"]["median_ms"]
    with pytest.raises(ValueError, match="'dense' and 'pruned' are taken"):
        compare_latency(_net(16), _net(4), SHAPE, batch_sizes=(1,), rounds=2, others={"dense": _net(6)})


def test_without_a_dense_model_the_pruned_one_is_timed_alone() -> None:
    out = compare_latency(None, _net(4), SHAPE, batch_sizes=(2,), rounds=2)
    (row,) = out["latency"]["eager"]
    assert set(row) == {"batch_size", "rounds", "pruned"} and "onnxruntime" not in out
