"""Per-group channel rounding chosen from measured latency steps.

Convolution kernels work on channels in blocks (oneDNN on x86: 8 floats with AVX2, 16 with AVX-512; GPU
kernels in tiles), so a layer that keeps a count that is not a multiple of the block costs about as much
as the next multiple: latency against a group's kept count is a staircase, not a line. Rounding a
group's counts to the width of its stairs loses nothing in speed and keeps the search off counts that
cost more than they save; rounding finer than the stairs wastes choices, coarser wastes accuracy.

:func:`measure_latency_steps` times each group at a few kept counts around its full width (the other
groups whole), interleaved in rounds (:func:`autoprune.metrics.measure_interleaved`), as ratios to the
widest count within each round. :func:`find_step` then fits each candidate staircase ``a + b * ceil(c /
s) * s`` (plus a penalty for counts off the stairs: some kernels leave their fast path there) and a line
``a + b * c`` to the curve, and keeps the largest step ``s`` whose staircase fits clearly better than the
line and as well as the best staircase. A curve that barely rises above the timing noise (the group
costs little), that a line fits as well (no stairs) or that nothing fits keeps the fallback rounding.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from autoprune._device import model_device
from autoprune.engine.deploy import check_form, in_form
from autoprune.engine.latency_calibration import _first_k
from autoprune.engine.latency_table import _input_shapes, _standalone
from autoprune.engine.layer_widths import layer_widths
from autoprune.engine.rounding import group_min, group_step
from autoprune.engine.structure import ModelStructure, PrunableGroup
from autoprune.errors import AutoPruneError
from autoprune.metrics.latency import PROTOCOL, measure_interleaved, ratio

__all__ = ["SCOPES", "Curve", "GroupSteps", "LatencySteps", "StepFit", "find_step", "group_steps",
           "measure_latency_steps", "step_counts"]  # fmt: skip

#: What is timed per count: ``layers`` (the group's conv/linear layers alone, at their sizes in the model)
#: or ``model`` (the whole model with only this group narrowed).
SCOPES: tuple[str, ...] = ("layers", "model")
#: A staircase must explain this much more of the curve than a line does (residual at most this share).
_BETTER = 0.5
#: ... and by more than this many noise variances (one value's): up to two more parameters than a line fit noise
#: this well about once in 400 tries.
_SIGNIFICANT = 12.0
#: A curve whose values span less than this many noise deviations is flat: the group's width hardly matters.
_FLAT = 4.0


@dataclass(frozen=True)
class Curve:
    """A group's measured latency against its kept count.

    Attributes:
        counts: Kept counts, ascending.
        values: Latency at each count, relative to the widest count (median of per-round ratios).
        noise: Standard deviation of one value (from the spread over rounds).
    """

    counts: tuple[int, ...]
    values: tuple[float, ...]
    noise: float


@dataclass(frozen=True)
class StepFit:
    """What :func:`find_step` concluded from one curve.

    Attributes:
        step: The step found (kept counts should be multiples of it), or ``None``.
        reason: ``staircase``, ``smooth`` (a line fits as well), ``irregular`` (neither fits), ``flat``
            (within the noise) or ``too few counts``.
        rss: Residual sum of squares per step tried; the spacing of the counts is the line.
        span: Largest minus smallest value, in noise deviations.
    """

    step: int | None
    reason: str
    rss: dict[int, float] = field(default_factory=dict)
    span: float = 0.0


def _lstsq(columns: list[np.ndarray], y: np.ndarray) -> tuple[float, np.ndarray]:
    x = np.column_stack([np.ones(len(y)), *columns])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return float(np.sum((y - x @ coef) ** 2)), coef[1:]


def _fit_stairs(counts: np.ndarray, y: np.ndarray, step: int) -> float:
    """Residual sum of squares of ``y ~ a + l * c + b * ceil(c / step) * step + d * [c not a multiple of step]``,
    ``l, b, d >= 0``: stairs of width ``step`` on top of a cost that grows with every channel, and counts between
    the stairs possibly slower than the next one."""
    columns = {"l": counts, "b": np.ceil(counts / step) * step, "d": (counts % step != 0).astype(float)}
    best = math.inf
    for keep in (("l", "b", "d"), ("l", "b"), ("l", "d"), ("b", "d"), ("b",), ("d",), ()):
        rss, coef = _lstsq([columns[k] for k in keep], y)
        if np.all(coef >= 0):
            best = min(best, rss)
    return best


def find_step(curve: Curve, steps: Iterable[int]) -> StepFit:
    """The largest step of ``steps`` at which ``curve`` is a staircase, if any.

    For each step ``s`` the curve is fitted with stairs ``a + b * ceil(c / s) * s`` (a count costs what the
    next multiple of ``s`` costs) on top of a slope ``l * c`` (work that grows with every channel, as measured
    on CPUs: e.g. 0.47, 0.52, 0.59, 0.62 of the widest at 4..16 of 32 channels, then a jump to 0.89 at 20), plus
    ``d`` for counts that are not multiples (kernels that leave their fast path there), ``l, b, d >= 0``, and
    with a line ``a + l * c``. A step is staircase-like when its fit leaves at
    most half the line's residual and improves on it by more than the noise explains; of those that fit as
    well as the best (within two noise variances) the largest is returned: rounding to it loses nothing.

    Args:
        curve: Latency against kept count, at counts spaced evenly (the spacing: the gcd of the counts).
        steps: Candidate steps; those that are not multiples of the spacing, or for which the counts do not
            reach over two stairs, are not tried.

    Returns:
        The step, or ``None`` with the reason: ``flat`` (the values span less than 4 noise deviations),
        ``smooth`` (a line fits within the noise), ``irregular`` (neither a line nor stairs fit) or
        ``too few counts`` (fewer than 4).
    """
    c, y = np.asarray(curve.counts, dtype=float), np.asarray(curve.values, dtype=float)
    noise = max(float(curve.noise), 1e-12)
    spacing = math.gcd(*curve.counts) if curve.counts else 1
    span = float(np.ptp(y)) / noise if len(y) else 0.0
    if len(c) < 4:
        return StepFit(None, "too few counts", span=span)
    rss = {spacing: _lstsq([c], y)[0]}
    for s in sorted(set(steps)):
        if s > spacing and s % spacing == 0 and len(set(np.ceil(c / s))) >= 2 and not np.all(c % s == 0):
            rss[s] = _fit_stairs(c, y, s)
    if span < _FLAT:
        return StepFit(None, "flat", rss, span)
    line = rss[spacing]
    best = min(rss, key=lambda s: (rss[s], s))
    if best == spacing or rss[best] > _BETTER * line or line - rss[best] < _SIGNIFICANT * noise**2:
        smooth = line <= 2 * noise**2 * (len(c) - 2)  # residuals of the line about what noise leaves
        return StepFit(None, "smooth" if smooth else "irregular", rss, span)
    ties = [s for s in rss if s != spacing and rss[s] <= rss[best] + 2 * noise**2]
    return StepFit(max(ties), "staircase", rss, span)


def group_steps(group: PrunableGroup, steps: Iterable[int]) -> list[int]:
    """The candidate steps as ``group`` can take them: each a multiple of its channel blocks too."""
    return sorted({group_step(group, s) for s in steps})


def step_counts(group: PrunableGroup, spacing: int, steps: Sequence[int]) -> list[int]:
    """Kept counts to time for ``group``: every allowed count at ``spacing`` (and the group's blocks) down from
    its full width over two of the largest steps (fewer for narrow groups), the full width included."""
    unit = group_step(group, spacing)
    least = group_min(group, spacing)
    top = group.channels - group.channels % unit
    low = max(least, top - 2 * max(group_steps(group, steps), default=unit) + unit)
    counts = {c for c in range(top, low - 1, -unit)} | {group.channels}
    return sorted(counts)


@dataclass(frozen=True)
class GroupSteps:
    """One group's measured curve, the fit and the rounding picked."""

    name: str
    channels: int
    curve: Curve
    fit: StepFit
    round_to: int
    widest_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "channels": self.channels, "counts": list(self.curve.counts),
                "ratios": [round(v, 5) for v in self.curve.values], "noise": self.curve.noise,
                "step": self.fit.step, "reason": self.fit.reason, "span_noise": round(self.fit.span, 2),
                "rss": {str(k): v for k, v in self.fit.rss.items()}, "round_to": self.round_to,
                "widest_ms": self.widest_ms}  # fmt: skip


@dataclass(frozen=True)
class LatencySteps:
    """Every measured group, and the conditions of the measurement."""

    groups: tuple[GroupSteps, ...]
    settings: dict[str, Any]

    @property
    def rounding(self) -> dict[str, int]:
        """Group name -> the rounding picked (the step found, else the fallback)."""
        return {g.name: g.round_to for g in self.groups}

    def to_dict(self) -> dict[str, Any]:
        return {**self.settings, "groups": [g.to_dict() for g in self.groups]}


#: ``(group, counts) -> (curve, widest count's ms)``: how a curve is measured (a recorded one in tests).
Measure = Callable[[PrunableGroup, list[int]], tuple[Curve, float | None]]


class _Layers(nn.Module):
    """Some layers, each run on its own input: what a group's width changes, timed as one model."""

    def __init__(self, layers: list[nn.Module], inputs: list[torch.Tensor]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.inputs = inputs

    def forward(self, _x: torch.Tensor) -> None:
        for layer, x in zip(self.layers, self.inputs, strict=True):
            layer(x)


def _layer_sets(structure: ModelStructure, group: str, counts: list[int], form: str,
                batch_size: int) -> dict[str, nn.Module]:  # fmt: skip
    """Per count, the layers whose widths the group's count changes, in ``form``, with inputs at ``batch_size``."""
    widths = {c: layer_widths(structure, {group: c}) for c in counts}
    dense = layer_widths(structure, {})
    changed = [n for n in dense if any(w[n] != dense[n] for w in widths.values())]
    timed = in_form(structure.model, form)
    folded = dict(timed.named_modules())  # the deploy form keeps the layers' names (bias from folding)
    modules = dict(structure.model.named_modules())
    shapes = _input_shapes(structure)
    device = model_device(structure.model)
    deploy = form == "deploy"
    out: dict[str, nn.Module] = {}
    for c in counts:
        layers, inputs = [], []
        for name in changed:
            for input_shape in shapes[name]:
                module = folded[name] if name in folded else modules[name]
                layer, x_shape = _standalone(module, input_shape, widths[c][name], device)
                x = torch.randn((batch_size, *x_shape[1:]), device=device)
                if deploy and x.dim() == 4:
                    layer, x = layer.to(memory_format=torch.channels_last), x.contiguous(
                        memory_format=torch.channels_last)
                layers.append(layer)
                inputs.append(x)
        out[str(c)] = _Layers(layers, inputs).eval()
    return out


def _timer(structure: ModelStructure, *, batch_size: int, form: str, scope: str, rounds: int, warmup: int,
           threads: int | None) -> Measure:  # fmt: skip
    def measure(group: PrunableGroup, counts: list[int]) -> tuple[Curve, float | None]:
        if scope == "layers":
            models = _layer_sets(structure, group.name, counts, form, batch_size)
            shape: tuple[int, ...] = (1, 1)
        else:
            models = {str(c): in_form(_first_k(structure, {group.name: c}), form) for c in counts}
            shape = structure.input_shape
        stats = measure_interleaved(models, shape, batch_size=batch_size, rounds=rounds, warmup=warmup,
                                    threads=threads)  # fmt: skip
        widest = str(counts[-1])
        ratios = [ratio(stats, str(c), widest) for c in counts]
        # one value is a median over rounds: its deviation is ~1.25 sigma / sqrt(rounds), sigma ~ IQR / 1.349
        iqr = statistics.median(r.iqr for r in ratios[:-1]) if len(ratios) > 1 else 0.0
        noise = 1.25 * iqr / 1.349 / math.sqrt(rounds)
        return Curve(tuple(counts), tuple(r.median for r in ratios), noise), stats[widest].median_ms

    return measure


def measure_latency_steps(
    structure: ModelStructure,
    *,
    groups: Sequence[str] | None = None,
    batch_size: int = 128,
    form: str = "deploy",
    scope: str = "layers",
    steps: Sequence[int] = (8, 16),
    spacing: int = 4,
    fallback: int = 8,
    rounds: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    measure: Measure | None = None,
    on_group: Callable[[GroupSteps], None] | None = None,
) -> LatencySteps:
    """Time every group at a few kept counts and pick its rounding from the latency steps found.

    Each group is timed alone (the others whole) at the counts of :func:`step_counts`: every multiple of
    ``spacing`` over two of the largest ``steps`` below its full width, one interleaved run per group, as
    ratios to its widest count. Cost: per group, ``len(counts) * (rounds + warmup)`` passes of its layers
    (``scope="layers"``) or of the whole model (``scope="model"``) at ``batch_size``.

    Args:
        structure: The model's groups (its model is timed on the device of its parameters).
        groups: Group names to measure (default: every group).
        batch_size: Batch size of the timed passes.
        form: ``deploy`` (BatchNorm folded, channels-last: as the model ships) or ``eager``.
        scope: ``layers`` (the group's conv/linear layers, each on an input of its size in the model) or
            ``model`` (the whole model with this group narrowed; slower, and its noise hides small steps).
        steps: Candidate roundings; the largest one at which the curve is a staircase is picked.
        spacing: Spacing of the counts timed (finer than the smallest step; a group's channel blocks too).
        fallback: The rounding of a group without a clear step (flat, smooth or noisy curve).
        rounds: Timed rounds per group; warmup: untimed passes per count first.
        threads: CPU threads (``None``: torch's current setting).
        measure: ``(group, counts) -> (Curve, widest ms)`` instead of timing (recorded measurements).
        on_group: Called after each group (progress).

    Raises:
        AutoPruneError: an unknown group, scope or form; steps, spacing, fallback, rounds or batch size below 1.
    """
    if scope not in SCOPES:
        raise AutoPruneError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    check_form(form)
    bad = {k: v for k, v in {"spacing": spacing, "fallback": fallback, "rounds": rounds, "batch_size": batch_size,
                             **{f"step {s}": s for s in steps}}.items() if not v >= 1}  # fmt: skip
    if bad or not steps or warmup < 0:
        raise AutoPruneError(f"latency steps: {bad or {'steps': list(steps), 'warmup': warmup}} must be >= 1 "
                             "(warmup >= 0, at least one step), e.g. steps 8,16 with spacing 4")  # fmt: skip
    names = list(groups) if groups is not None else structure.group_names
    chosen = [structure.group(n) for n in names]  # an unknown name raises with the valid ones
    timer = measure or _timer(structure, batch_size=batch_size, form=form, scope=scope, rounds=rounds,
                              warmup=warmup, threads=threads)  # fmt: skip
    started = time.perf_counter()
    results = []
    used_threads = torch.get_num_threads() if threads is None else threads
    for g in chosen:
        counts = step_counts(g, spacing, steps)
        if len(counts) < 4:  # too narrow to show a step: not worth timing
            curve, widest_ms = Curve(tuple(counts), (1.0,) * len(counts), 0.0), None
        else:
            curve, widest_ms = timer(g, counts)
        fit = find_step(curve, group_steps(g, steps))
        own = min(fallback if fit.step is None else fit.step, g.channels)
        results.append(GroupSteps(g.name, g.channels, curve, fit, own, widest_ms))
        if on_group is not None:
            on_group(results[-1])
    settings = {"batch_size": batch_size, "form": form, "scope": scope, "steps": list(steps), "spacing": spacing,
                "fallback": fallback, "rounds": rounds, "warmup": warmup, "threads": used_threads,
                "device": str(model_device(structure.model)), "protocol": PROTOCOL,
                "seconds": round(time.perf_counter() - started, 2), "recorded": measure is not None}  # fmt: skip
    return LatencySteps(tuple(results), settings)
