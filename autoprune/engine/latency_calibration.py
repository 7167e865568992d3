"""Calibrating a latency table against whole-model measurements on this machine.

A :class:`~autoprune.engine.latency_lookup.LatencyTable` sums its layers' standalone timings and adds the
dense model's remainder as a constant. That misses two things a whole model does (see
``benchmarks/results/latency_table.md``): the memory-bound elementwise work (BatchNorm, ReLU, residual
additions), which shrinks with the kept activations instead of staying constant, and the difference between
a layer timed alone and the same layer inside the model. :func:`calibrate_table` fits both from
measurements instead of assuming them: a few candidates spread over the space are extracted and timed
interleaved with the dense model (:func:`autoprune.metrics.measure_interleaved`), and the model

    latency_ms = layer_scale * table_layers_ms + ms_per_mac * macs + ms_per_activation * kept_activations
                 + fixed_ms

is fitted to them: least squares on the relative error, non-negative coefficients, and only the terms
that predict left-out candidates better (leave-one-out), so a dozen noisy measurements do not buy four
free coefficients. The table then predicts with it, so a latency budget (a ratio to the dense
prediction) follows what the model does as a whole.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from autoprune.engine.deploy import in_form
from autoprune.engine.layer_widths import layer_widths
from autoprune.engine.plan import PrunePlan, apply_plan
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError
from autoprune.metrics.latency import LatencyStats, RatioStats, measure_interleaved, ratio

if TYPE_CHECKING:
    from autoprune.engine.latency_lookup import LatencyTable

__all__ = [
    "LatencyCalibration",
    "Sample",
    "calibrate_table",
    "calibration_candidates",
    "features",
    "fit_calibration",
    "kept_activations",
    "measure_candidates",
    "ratio_mape",
]

#: One measurement: the table's layer sum (ms), MACs and kept activations (per sample), the measured ms.
Sample = tuple[float, float, float, float]
#: The coefficients, in the order of a sample's terms (the last one multiplies 1).
TERMS = ("layer_scale", "ms_per_mac", "ms_per_activation", "fixed_ms")


@dataclass(frozen=True)
class LatencyCalibration:
    """``ms = layer_scale * layers_ms + ms_per_mac * macs + ms_per_activation * activations + fixed_ms``.

    Attributes:
        layer_scale: Weight of the table's layer sum (how layers inside the model compare to alone).
        ms_per_mac: Milliseconds per multiply-accumulate of one sample (compute the table misjudges).
        ms_per_activation: Milliseconds per kept activation element of one sample (elementwise work).
        fixed_ms: Fixed per-model overhead (framework, pooling, the head).
        terms: The terms fitted (the others are 0), or ``("table",)`` where the table's own prediction
            (scale 1, its overhead as ``fixed_ms``) predicted the measurements best.
        samples: The ``(layers_ms, macs, activations, measured_ms)`` fitted, the dense model first.
        fit_mape_pct: Mean absolute percentage error of the candidates' predicted ratio to dense over
            ``samples``: ``calibrated``, (uncalibrated) ``table`` and ``leave_one_out`` (each candidate
            predicted by a fit without it: what chose the terms).
    """

    layer_scale: float
    ms_per_mac: float
    ms_per_activation: float
    fixed_ms: float
    terms: tuple[str, ...] = TERMS
    samples: tuple[Sample, ...] = field(default=(), repr=False)
    fit_mape_pct: dict[str, float] = field(default_factory=dict)

    @property
    def coefficients(self) -> tuple[float, float, float, float]:
        return self.layer_scale, self.ms_per_mac, self.ms_per_activation, self.fixed_ms

    def predict(self, layers_ms: float, macs: float, activations: float) -> float:
        """Predicted milliseconds of a model whose table layers sum to ``layers_ms``."""
        return float(np.dot(self.coefficients, (layers_ms, macs, activations, 1.0)))

    def to_dict(self) -> dict[str, Any]:
        return {**dict(zip(TERMS, self.coefficients, strict=True)), "terms": list(self.terms),
                "samples": [list(s) for s in self.samples], "fit_mape_pct": dict(self.fit_mape_pct)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyCalibration:
        """Rebuild a calibration written by :meth:`to_dict` (a malformed one raises KeyError/TypeError/ValueError)."""
        samples = tuple((float(a), float(b), float(c), float(d)) for a, b, c, d in data.get("samples", []))
        scale, per_mac, per_activation, fixed = (float(data[t]) for t in TERMS)
        return cls(scale, per_mac, per_activation, fixed, terms=tuple(str(t) for t in data.get("terms", TERMS)),
                   samples=samples,
                   fit_mape_pct={str(k): float(v) for k, v in data.get("fit_mape_pct", {}).items()})  # fmt: skip


def features(structure: ModelStructure, counts: Mapping[str, int]) -> tuple[float, float]:
    """``(macs, kept_activations)`` of the sub-network ``counts``: the calibration's terms besides the table."""
    return float(structure.predict_macs(counts)), kept_activations(structure, counts)


def kept_activations(structure: ModelStructure, counts: Mapping[str, int]) -> float:
    """Output elements per sample of every conv/linear layer when each group keeps ``counts[group]`` channels.

    What the elementwise layers after them (BatchNorm, activations, residual additions) read and write.
    """
    return float(sum(out * structure.costs[name].out_positions
                     for name, (_, out) in layer_widths(structure, counts).items()))  # fmt: skip


def ratio_mape(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean absolute percentage error of ``predicted`` against ``measured`` (per cent)."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(np.mean(np.abs(p - m) / m) * 100)


def fit_calibration(samples: Sequence[Sample], *, table_overhead_ms: float | None = None) -> LatencyCalibration:
    """Fit :class:`LatencyCalibration` to ``samples`` (the dense model first).

    Every subset of the terms that holds at least one of layer sum, MACs or activations is fitted by least
    squares on the relative error, and subsets with a negative coefficient are discarded. Each is judged by
    leave-one-out on what a budget uses, the latency ratio to dense: every candidate's ratio predicted by
    a fit without it. The best is kept (refitted on all samples); given ``table_overhead_ms``, the table's
    own prediction (overhead plus layer sum, nothing fitted) competes too and is kept if no fit beats it.

    Args:
        samples: ``(layers_ms, macs, activations, measured_ms)`` per measured model, the dense model first.
        table_overhead_ms: The table's own overhead.

    Raises:
        AutoPruneError: fewer than 3 samples, or a measured time that is not positive.
    """
    data = np.asarray(samples, dtype=float)
    if data.ndim != 2 or len(data) < 3 or data.shape[1] != 4 or not np.all(data[:, 3] > 0):
        raise AutoPruneError(f"fit_calibration needs at least 3 (layers_ms, macs, activations, measured_ms) samples "
                             f"with positive times, got {len(samples)}: measure more candidates")  # fmt: skip
    x, y = np.column_stack([data[:, :3], np.ones(len(data))]), data[:, 3]
    measured = y / y[0]
    best: tuple[float, list[int]] | None = None
    if table_overhead_ms is not None:
        table = np.array([1.0, 0.0, 0.0, table_overhead_ms])
        best = (ratio_mape(_ratios(list(x @ table))[1:], measured[1:]) / 100, [])
    for size in range(1, 5):
        for subset in itertools.combinations(range(4), size):
            cols = list(subset)
            if cols == [3] or size >= len(data) - 1 or _solve(x, y, cols) is None:
                continue
            loo = _leave_one_out(x, y, cols)
            if best is None or loo < best[0] - 1e-12:
                best = (loo, cols)
    assert best is not None  # the layer sum alone has a non-negative least-squares coefficient
    if best[1]:
        coef = np.zeros(4)
        coef[best[1]] = _solve(x, y, best[1])
    else:
        coef = table
    kept: tuple[Sample, ...] = tuple((float(a), float(b), float(c), float(d)) for a, b, c, d in data)
    scale, per_mac, per_activation, fixed = (float(c) for c in coef)
    terms = tuple(TERMS[i] for i in best[1]) or ("table",)
    calibration = LatencyCalibration(scale, per_mac, per_activation, fixed, terms=terms, samples=kept)
    mape = {"calibrated": ratio_mape(_ratios([calibration.predict(*row[:3]) for row in data])[1:], measured[1:]),
            "leave_one_out": 100 * best[0]}  # fmt: skip
    if table_overhead_ms is not None:
        mape["table"] = ratio_mape(_ratios(list(data[:, 0] + table_overhead_ms))[1:], measured[1:])
    return dataclasses.replace(calibration, fit_mape_pct=mape)


def _solve(x: np.ndarray, y: np.ndarray, cols: list[int]) -> np.ndarray | None:
    """Least squares of relative error on ``cols``; None if a coefficient comes out negative."""
    coef, *_ = np.linalg.lstsq(x[:, cols] / y[:, None], np.ones(len(y)), rcond=None)
    return None if np.any(coef < 0) else coef


def _leave_one_out(x: np.ndarray, y: np.ndarray, cols: list[int]) -> float:
    """Mean relative error of each candidate's ratio to dense (row 0, always fitted) predicted by the fit
    without that candidate (inf if a fit comes out negative)."""
    errors = []
    for i in range(1, len(y)):
        keep = np.arange(len(y)) != i
        coef = _solve(x[keep], y[keep], cols)
        if coef is None:
            return math.inf
        predicted = float(x[i, cols] @ coef) / float(x[0, cols] @ coef)
        errors.append(abs(predicted - y[i] / y[0]) / (y[i] / y[0]))
    return float(np.mean(errors))


def _ratios(ms: Sequence[float]) -> list[float]:
    return [m / ms[0] for m in ms]


def calibration_candidates(choices: Mapping[str, Sequence[int]], count: int, *, seed: int = 0) -> list[dict[str, int]]:
    """``count`` candidates spread over ``choices``: uniform ones (every group at the same quantile of its
    choices, from the smallest up) alternating with random ones (a random choice per group)."""
    rng = np.random.default_rng(seed)
    ordered = {name: sorted(set(c)) for name, c in choices.items()}
    uniform = max(1, count // 3)
    out: list[dict[str, int]] = []
    for i in range(count):
        if i < uniform:
            q = i / uniform
            out.append({n: c[min(len(c) - 1, int(q * len(c)))] for n, c in ordered.items()})
        else:
            out.append({n: int(c[rng.integers(len(c))]) for n, c in ordered.items()})
    return out


def _first_k(structure: ModelStructure, counts: Mapping[str, int]) -> nn.Module:
    plan = PrunePlan(input_shape=structure.input_shape, channels={g.name: g.channels for g in structure.groups},
                     kept={g.name: list(range(counts.get(g.name, g.channels))) for g in structure.groups})
    return apply_plan(structure.model, plan).eval()


def measure_candidates(
    structure: ModelStructure,
    candidates: Sequence[Mapping[str, int]],
    *,
    batch_size: int,
    form: str,
    rounds: int = 15,
    warmup: int = 3,
    threads: int | None = None,
) -> tuple[LatencyStats, list[RatioStats]]:
    """The dense model's latency and each candidate's latency ratio to it, from one interleaved run.

    Candidates keep the first ``k`` channels of every group (latency does not depend on which).
    """
    models: dict[str, nn.Module] = {"dense": in_form(structure.model, form)}
    for i, counts in enumerate(candidates):
        models[str(i)] = in_form(_first_k(structure, counts), form)
    stats = measure_interleaved(models, structure.input_shape, batch_size=batch_size, rounds=rounds, warmup=warmup,
                                threads=threads)  # fmt: skip
    return stats["dense"], [ratio(stats, str(i), "dense") for i in range(len(candidates))]


def calibrate_table(
    table: LatencyTable,
    structure: ModelStructure,
    choices: Mapping[str, Sequence[int]],
    *,
    candidates: int = 12,
    rounds: int = 15,
    seed: int = 0,
    threads: int | None = None,
) -> LatencyTable:
    """``table`` with a :class:`LatencyCalibration` fitted to ``candidates`` models measured with the dense one.

    The candidates (see :func:`calibration_candidates`) are timed interleaved with the dense model in the
    table's form and at its batch size; each one's measured ratio to dense, times the dense median, is
    fitted against the table's layer sum, the MACs and the kept activations (:func:`fit_calibration`).

    Raises:
        AutoPruneError: fewer than 2 candidates.
    """
    if candidates < 2:
        raise AutoPruneError(f"candidates={candidates} must be >= 2: the calibration fits three coefficients")
    drawn = calibration_candidates(choices, candidates, seed=seed)
    dense, ratios = measure_candidates(structure, drawn, batch_size=table.batch_size, form=table.form,
                                          rounds=rounds, threads=threads if threads is not None else table.threads)
    samples = [(table.layers_ms(structure, c), *features(structure, c), r * dense.median_ms)
               for c, r in zip([{}, *drawn], [1.0, *(r.median for r in ratios)], strict=True)]  # fmt: skip
    return dataclasses.replace(table, calibration=fit_calibration(samples, table_overhead_ms=table.overhead_ms))
