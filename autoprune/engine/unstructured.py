"""Mask ("unstructured") pruning plans: zero kernels, kernel rows or single weights to meet a MACs budget.

Three mask granularities from the literature (Mao et al., "Exploring the granularity of sparsity in
CNNs", 2017), coarse to fine, for the weights of conv and linear layers:

- ``kernel``: a whole kernel of one (output, input) channel pair, e.g. 3×3 weights;
- ``vector``: one row of a kernel (``kw`` weights, the last kernel dim);
- ``fine``: single weights.

A linear weight has no kernel, so ``kernel`` and ``vector`` fall back to ``fine`` on Linear layers
(recorded in the plan's ``meta["fine_fallback"]``). Conv1d/Conv3d follow the same rule: a kernel is all
spatial dims, a row is the last one.

The budget is in *effective* MACs: non-zero weights times the positions where they are applied, as
:func:`autoprune.metrics.count_cost` counts them. Dense shapes never change, so dense MACs and measured
latency stay the same unless a sparse kernel runs the model.

Plans store full-shape boolean keep masks (one per weight, same shape as the weight), so
:func:`autoprune.engine.plan.apply_masks` and the JSON format of :class:`PrunePlan` need nothing new.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from autoprune.engine._layers_check import check_layer_names
from autoprune.engine.plan import MASK_GRANULARITIES, PrunePlan
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError, BudgetError
from autoprune.metrics.macs import count_cost, layer_costs

ScoreFn = Callable[[str, torch.Tensor], torch.Tensor]
"""``(parameter_name, weight) -> scores``: one finite, non-negative score per weight (higher = keep)."""

Scope = Literal["local", "global"]

_MASKABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# how far the reached ratio may miss the target before we warn (units too coarse for the budget)
_TOLERANCE = 0.005


@dataclass
class _Layer:
    """One maskable weight cut into mask units (``n_units`` rows of ``unit_size`` weights)."""

    module: str
    param: str
    shape: torch.Size
    unit_size: int
    order: np.ndarray  # unit indices, best score first (ties: lower index first)
    unit_macs: np.ndarray  # effective MACs of each unit, in ``order``
    dense_unit_macs: int  # MACs of one unit if all its weights were non-zero
    sorted_scores: np.ndarray  # unit scores in ``order``
    floor: int  # units always kept

    @property
    def n_units(self) -> int:
        return len(self.order)


def _unit_size(weight: torch.Tensor, granularity: str) -> int:
    if weight.dim() <= 2 or granularity == "fine":
        return 1
    if granularity == "kernel":
        return math.prod(weight.shape[2:])
    return int(weight.shape[-1])  # vector: one kernel row


def _check_args(granularity: str, target_macs: float, scope: str, min_keep: float) -> None:
    if granularity not in MASK_GRANULARITIES:
        raise AutoPruneError(
            f"granularity {granularity!r} is not a mask granularity; use one of "
            f"{', '.join(MASK_GRANULARITIES)} (structured 'channel' plans come from the channel selection)"
        )
    if not 0.0 < target_macs <= 1.0:
        raise BudgetError(
            f"target_macs={target_macs} must be in (0, 1]: it is the fraction of the dense MACs to keep "
            "as effective (non-zero weight) MACs"
        )
    if scope not in ("local", "global"):
        raise AutoPruneError(f"scope {scope!r} must be 'local' or 'global'")
    if not 0.0 <= min_keep <= 1.0:
        raise BudgetError(f"min_keep={min_keep} must be in [0, 1]: the fraction of units every layer keeps")


def _unit_scores(name: str, param: torch.Tensor, score_fn: ScoreFn, unit_size: int) -> np.ndarray:
    with torch.no_grad():
        scores = score_fn(name, param)
    if not isinstance(scores, torch.Tensor) or scores.shape != param.shape:
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise AutoPruneError(
            f"score_fn returned {got} for {name!r}; it must return one score per weight, "
            f"shape {tuple(param.shape)}"
        )
    flat = scores.detach().to("cpu", torch.float64).reshape(-1, unit_size).sum(dim=1).numpy()
    if not np.isfinite(flat).all() or (flat < 0).any():
        raise AutoPruneError(
            f"score_fn returned negative or non-finite scores for {name!r}; scores must be finite and "
            "non-negative (e.g. lambda n, w: w.abs())"
        )
    return flat


def _layers(
    model: nn.Module,
    input_shape: tuple[int, ...],
    granularity: str,
    score_fn: ScoreFn,
    exclude: Sequence[str],
    min_keep: float,
) -> tuple[list[_Layer], int, int]:
    """The maskable layers, the effective MACs of the layers that stay as they are, and the dense MACs."""
    modules = dict(model.named_modules())
    check_layer_names(modules, exclude, role="excluded",
                      examples=[n for n, m in modules.items() if isinstance(m, _MASKABLE)])
    frozen = set(exclude) | set(ModelStructure(model, input_shape).output_layers)
    costs = layer_costs(model, input_shape)
    # a weight tied between modules (one parameter, one name) is left dense: masking it through one
    # module would change the others' effective MACs behind the budget's back
    uses = Counter(id(getattr(modules[n], "weight", None)) for n in costs)
    param_names = {id(p): n for n, p in model.named_parameters()}
    fixed = 0
    layers: list[_Layer] = []
    for name, cost in costs.items():
        module = modules[name]
        weight = getattr(module, "weight", None)
        if (
            name in frozen
            or not isinstance(module, _MASKABLE)
            or not isinstance(weight, torch.Tensor)
            or uses[id(weight)] > 1
            or param_names.get(id(weight)) != f"{name}.weight"
        ):
            fixed += cost.effective_macs
            continue
        size = _unit_size(weight, granularity)
        macs_per_weight = cost.macs // weight.numel()  # out_positions, times calls for a shared module
        scores = _unit_scores(f"{name}.weight", weight, score_fn, size)
        nonzero = (weight.detach() != 0).reshape(-1, size).sum(dim=1).cpu().numpy().astype(np.int64)
        order = np.argsort(-scores, kind="stable")
        n = len(order)
        layers.append(
            _Layer(
                module=name,
                param=f"{name}.weight",
                shape=weight.shape,
                unit_size=size,
                order=order,
                unit_macs=nonzero[order] * macs_per_weight,
                dense_unit_macs=size * macs_per_weight,
                sorted_scores=scores[order],
                floor=min(n, max(1, math.ceil(min_keep * n - 1e-9))),
            )
        )
    dense = sum(c.macs for c in costs.values())
    return layers, fixed, dense


def _tail_keys(layers: list[_Layer], scope: Scope) -> np.ndarray:
    """Sort keys (ascending = added first) of every unit above its layer's floor, layer after layer."""
    keys = []
    for layer in layers:
        ranks = np.arange(layer.floor, layer.n_units, dtype=np.float64)
        if scope == "local":
            # the unit of rank r is kept once the common keep fraction f rounds to r + 1 units
            keys.append((ranks + 0.5) / layer.n_units)
        else:
            mean = float(layer.sorted_scores.mean()) or 1.0
            per_mac = layer.sorted_scores[layer.floor :] / mean / max(layer.dense_unit_macs, 1)
            keys.append(-per_mac)
    return np.concatenate(keys) if keys else np.zeros(0)


def _select(layers: list[_Layer], scope: Scope, budget: float) -> tuple[list[int], int]:
    """Kept units per layer (a prefix of its order) and their effective MACs, at most ``budget``."""
    floor_macs = sum(int(layer.unit_macs[: layer.floor].sum()) for layer in layers)
    keys = _tail_keys(layers, scope)
    owner = np.concatenate(
        [np.full(layer.n_units - layer.floor, i, dtype=np.int64) for i, layer in enumerate(layers)]
        or [np.zeros(0, dtype=np.int64)]
    )
    tail_macs = np.concatenate([layer.unit_macs[layer.floor :] for layer in layers] or [np.zeros(0)])
    # stable sort: equal keys keep layer order, then rank order, so ties resolve deterministically
    sequence = np.argsort(keys, kind="stable")
    cumulative = np.cumsum(tail_macs[sequence])
    taken = int(np.searchsorted(cumulative, budget - floor_macs, side="right"))
    counts = [layer.floor for layer in layers]
    for i, extra in enumerate(np.bincount(owner[sequence[:taken]], minlength=len(layers))):
        counts[i] += int(extra)
    kept_macs = floor_macs + (int(cumulative[taken - 1]) if taken else 0)
    return counts, kept_macs


def _mask(layer: _Layer, count: int) -> torch.Tensor:
    keep = torch.zeros(layer.n_units, dtype=torch.bool)
    keep[torch.from_numpy(layer.order[:count].copy())] = True
    return keep.unsqueeze(1).expand(layer.n_units, layer.unit_size).reshape(layer.shape).clone()


def make_mask_plan(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    granularity: str,
    target_macs: float,
    score_fn: ScoreFn,
    scope: Scope = "local",
    exclude: Sequence[str] = (),
    min_keep: float = 0.05,
    meta: dict[str, Any] | None = None,
) -> PrunePlan:
    """A mask plan keeping ``target_macs`` of the dense MACs as effective MACs.

    Mask units (kernels, kernel rows or weights, see the module docstring) are ranked inside each layer
    by the sum of their per-weight scores; a unit costs its non-zero weights times the layer's output
    positions. Two scopes:

    - ``local``: the same keep fraction of units in every maskable layer, the fraction bisected over
      the points where some layer gains a unit, so the cost lands one unit under the budget at most;
    - ``global``: one ranking of all units by score per MAC, each layer's scores divided by their mean
      first so layers with large weights do not win everything.

    Either way every maskable layer keeps at least ``min_keep`` of its units (and at least one unit).
    Output layers (``ModelStructure(...).output_layers``) and ``exclude`` are never masked but count
    towards the budget with their current effective MACs. Ties are broken by lower unit index, then
    earlier layer.

    Args:
        model: The dense model (not modified).
        input_shape: ``(N, C, H, W)`` of its inputs; the batch size is ignored.
        granularity: ``"kernel"``, ``"vector"`` or ``"fine"``.
        target_macs: Fraction in (0, 1] of the dense conv/linear MACs to keep as effective MACs.
        score_fn: ``(param_name, weight) -> scores`` of the weight's shape, finite and non-negative,
            e.g. ``lambda n, w: w.abs()``. It is called under ``torch.no_grad`` and may read ``w.grad``.
        scope: ``"local"`` or ``"global"``.
        exclude: Module names never to mask.
        min_keep: Fraction of its units each maskable layer always keeps.
        meta: Extra provenance (criterion, model name) stored in the plan.

    Returns:
        A :class:`PrunePlan` with a full-shape boolean keep mask per masked weight (``"<module>.weight"``)
        and ``meta`` holding the target, the reached effective ratio, the scope and ``min_keep``.

    Raises:
        BudgetError: ``target_macs`` outside (0, 1], or below what ``min_keep`` in every layer allows
            (the message gives the reachable minimum).
        AutoPruneError: bad granularity, scope, excluded name or scores.
    """
    _check_args(granularity, target_macs, scope, min_keep)
    layers, fixed, dense = _layers(model, input_shape, granularity, score_fn, exclude, min_keep)
    if not layers:
        raise AutoPruneError(
            "the model has no maskable conv/linear layer: all are output layers or excluded "
            f"(exclude={list(exclude)})"
        )
    floor = fixed + sum(int(layer.unit_macs[: layer.floor].sum()) for layer in layers)
    budget = target_macs * dense
    if floor > budget * (1 + 1e-12):
        raise BudgetError(
            f"target_macs={target_macs:.4f} cannot be met with {granularity} masks: keeping min_keep="
            f"{min_keep} of the units in every maskable layer leaves {floor / dense:.4f} of the dense MACs "
            f"(output and excluded layers are never masked). The reachable minimum is {floor / dense:.4f}: "
            "raise target_macs to at least that or lower min_keep."
        )
    counts, kept = _select(layers, scope, budget * (1 + 1e-12) - fixed)
    reached = (fixed + kept) / dense
    pruned = any(c < layer.n_units for c, layer in zip(counts, layers, strict=True))
    if reached < target_macs - _TOLERANCE and pruned:
        warnings.warn(
            f"{granularity} mask units are too coarse for this model: reached {reached:.4f} effective MACs "
            f"for target {target_macs:.4f}; use a finer granularity for a closer fit",
            stacklevel=2,
        )
    masks = {layer.param: _mask(layer, count) for layer, count in zip(layers, counts, strict=True)}
    fallback = [layer.module for layer in layers if granularity != "fine" and len(layer.shape) <= 2]
    info = {
        "target_macs": target_macs,
        "effective_macs_ratio": reached,
        "effective_macs": fixed + kept,
        "dense_macs": dense,
        "scope": scope,
        "min_keep": min_keep,
        "exclude": list(exclude),
        "fine_fallback": fallback,
        "unit_keep_ratios": {
            layer.module: c / layer.n_units for layer, c in zip(layers, counts, strict=True)
        },
    }
    return PrunePlan(
        input_shape=tuple(input_shape),
        granularity=granularity,
        masks=masks,
        meta={**(meta or {}), **info},
    )


def mask_cost(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    """Dense and effective (non-zero weight) conv/linear MACs and parameters of ``model``.

    Returns:
        ``{"dense_macs", "effective_macs", "effective_ratio", "params", "nonzero_params"}``, one sample.
    """
    cost = count_cost(model, input_shape)
    return {
        "dense_macs": cost.macs,
        "effective_macs": cost.effective_macs,
        "effective_ratio": cost.effective_macs / cost.macs if cost.macs else 1.0,
        "params": cost.params,
        "nonzero_params": cost.nonzero_params,
    }
