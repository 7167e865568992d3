"""What to prune and how (:class:`PruneConfig`), channel ranking, and plans for given counts.

The budget ("keep 50% of the MACs") is turned into counts by the search space's budget module
(:mod:`autoprune.search_spaces.budget`); :func:`autoprune.pipelines.prune.prune` puts the two together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from autoprune.defaults import DEFAULT_ROUND_TO
from autoprune.engine._plan_inputs import PlanInputs
from autoprune.engine.importance import IMPORTANCES
from autoprune.engine.plan import GRANULARITIES, STRUCTURED, PrunePlan
from autoprune.engine.selection import select_kept
from autoprune.engine.structure import ModelStructure
from autoprune.engine.unstructured import make_mask_plan
from autoprune.errors import AutoPruneError, BudgetError

#: Default channel rounding: kept widths are multiples of 8 (measured in benchmarks/results/engine_speed.md).



@dataclass(frozen=True)
class PruneConfig:
    """What to prune and how.

    Exactly one budget is used: ``keep_ratios`` (per group) if given, else ``target_params`` if given,
    else ``target_macs``.

    Attributes:
        target_macs: Fraction of the dense MACs to keep, in (0, 1]. For mask granularities it applies
            to effective (non-zero) MACs.
        target_params: Fraction of the dense parameters to keep (structured only).
        keep_ratios: Per-group keep ratios (group name -> fraction of channels kept).
        criterion: Importance criterion name (``l1``, ``l2``, ``bn_scale``, ``taylor``,
            ``activation_mean``, ``apoz``, ``random``).
        granularity: ``channel`` (physically removed) or ``kernel``/``vector``/``fine`` (masks).
        scope: ``local`` (same ratio everywhere) or ``global`` (one ranking across groups).
        round_to: Kept channel counts are multiples of this (structured only).
        min_keep_ratio: No group (or masked layer) keeps less than this fraction.
        calibration_batches: Batches of calibration data for data-driven criteria.
        seed: Seed of the random criterion.
        ignored_layers: Module names never to prune (the output layer is always kept).
    """

    target_macs: float | None = 0.5
    target_params: float | None = None
    keep_ratios: Mapping[str, float] | None = None
    criterion: str = "l1"
    granularity: str = STRUCTURED
    scope: Literal["local", "global"] = "local"
    round_to: int = DEFAULT_ROUND_TO
    min_keep_ratio: float = 0.05
    calibration_batches: int = 8
    seed: int = 0
    ignored_layers: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("target_macs", "target_params"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise BudgetError(
                    f"{name}={value} must be in (0, 1]: it is the fraction of the dense "
                    f"{name.split('_')[1]} to keep"
                )
        if self.target_macs is None and self.target_params is None and self.keep_ratios is None:
            raise BudgetError("give a budget: target_macs, target_params or keep_ratios")
        if self.criterion not in IMPORTANCES:
            raise AutoPruneError(IMPORTANCES.unknown_message(self.criterion))
        if self.granularity not in GRANULARITIES:
            raise AutoPruneError(
                f"granularity {self.granularity!r} must be one of {', '.join(GRANULARITIES)}"
            )
        if self.scope not in ("local", "global"):
            raise AutoPruneError(f"scope {self.scope!r} must be 'local' or 'global'")
        if self.round_to < 1:
            raise AutoPruneError(f"round_to={self.round_to} must be >= 1 (1 = no rounding)")
        if not 0.0 < self.min_keep_ratio <= 1.0:
            raise BudgetError(f"min_keep_ratio={self.min_keep_ratio} must be in (0, 1]")
        if self.granularity != STRUCTURED and (self.keep_ratios is not None or self.target_params is not None):
            raise BudgetError(f"granularity {self.granularity!r} takes target_macs only")
        if self.granularity != STRUCTURED and self.target_macs is None:
            raise BudgetError(f"granularity {self.granularity!r} needs target_macs")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["keep_ratios"] = dict(self.keep_ratios) if self.keep_ratios is not None else None
        data["ignored_layers"] = list(self.ignored_layers)
        return data


def channel_scores(inputs: PlanInputs) -> tuple[ModelStructure, dict[str, torch.Tensor]]:
    """The model's groups and one importance score per channel of each (the criterion of ``inputs.config``).

    Raises:
        AutoPruneError: a data-driven criterion without calibration data; a model without prunable groups.
    """
    model, config = inputs.model, inputs.config
    importance = inputs.criterion()
    structure = inputs.structure or ModelStructure(model, inputs.input_shape, ignored_layers=config.ignored_layers)
    if not structure.groups:
        raise AutoPruneError(
            f"{type(model).__name__} has no prunable channel groups (all layers are output or unsupported layers)"
        )
    inputs.prepare(importance, structure)
    return structure, {g.name: importance(g) for g in structure.groups}


def mask_plan(inputs: PlanInputs) -> PrunePlan:
    """A mask plan (granularity ``kernel``, ``vector`` or ``fine``) meeting ``inputs.config.target_macs``."""
    config = inputs.config
    assert config.granularity != STRUCTURED and config.target_macs is not None
    importance = inputs.criterion()
    inputs.prepare(importance)
    return make_mask_plan(
        inputs.model,
        inputs.input_shape,
        granularity=config.granularity,
        target_macs=config.target_macs,
        score_fn=lambda name, w: importance.unstructured_scores(w, name),
        scope=config.scope,
        exclude=config.ignored_layers,
        min_keep=config.min_keep_ratio,
        meta={"criterion": config.criterion, "config": config.to_dict()},
    )


def plan_for_counts(
    structure: ModelStructure,
    scores: Mapping[str, torch.Tensor],
    counts: Mapping[str, int],
    config: PruneConfig,
) -> PrunePlan:
    """The structured plan keeping the ``counts[g]`` most important channels of every group ``g``."""
    kept = {g.name: select_kept(g, scores[g.name], counts[g.name]) for g in structure.groups}
    meta: dict[str, Any] = {
        "criterion": config.criterion,
        "config": config.to_dict(),
        "predicted_macs": structure.predict_macs(counts),
        "predicted_params": structure.predict_params(counts),
        "dense_macs": structure.dense_macs,
        "dense_params": structure.dense_params,
    }
    return PrunePlan(
        input_shape=structure.input_shape,
        granularity=STRUCTURED,
        channels={g.name: g.channels for g in structure.groups},
        kept=kept,
        meta=meta,
    )


def compose_plans(first: PrunePlan, second: PrunePlan) -> PrunePlan:
    """The plan equivalent to applying ``first`` to the base model and then ``second`` to the result.

    Used by gradual (iterative) pruning so the final plan always refers to the base model.
    """
    if first.granularity != second.granularity:
        raise AutoPruneError("cannot compose plans of different granularities")
    if first.granularity != STRUCTURED:
        masks = dict(first.masks)
        for name, m in second.masks.items():
            masks[name] = masks[name] & m if name in masks else m
        return PrunePlan(first.input_shape, first.granularity, masks=masks, meta=second.meta)
    kept = dict(first.kept)
    channels = dict(first.channels)
    for name, idxs in second.kept.items():
        base = first.kept.get(name)
        if base is None:
            kept[name] = list(idxs)
            channels[name] = second.channels[name]
        else:
            kept[name] = [base[i] for i in idxs]
    return PrunePlan(first.input_shape, STRUCTURED, channels=channels, kept=kept, meta=second.meta)
