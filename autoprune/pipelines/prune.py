"""One-shot pruning to a budget: rank channels (engine), fit the budget (search space), build the plan.

The public entry points :func:`compute_plan` and :func:`prune` (``autoprune.prune``). The budget is fitted
by the same module every searcher uses (:mod:`autoprune.search_spaces.budget`): a space over every group
whose choices are all widths allowed by ``round_to`` and ``min_keep_ratio``, then the widest uniform
candidate within it (``scope="local"``) or one global ranking of normalised importance (``"global"``).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from autoprune._types import Batch
from autoprune.engine.plan import STRUCTURED, PrunePlan, apply_plan
from autoprune.engine.pruner import PlanInputs, PruneConfig, channel_scores, mask_plan, plan_for_counts
from autoprune.engine.structure import ModelStructure
from autoprune.search_spaces.budget import global_counts
from autoprune.search_spaces.spec import channel_space


def compute_plan(
    model: nn.Module,
    input_shape: tuple[int, ...],
    config: PruneConfig,
    *,
    calibration: Iterable[Batch] | None = None,
    structure: ModelStructure | None = None,
) -> PrunePlan:
    """Rank channels (or weights) by the criterion and choose what to keep under the budget.

    Args:
        model, input_shape, config, calibration, structure: What the plan is computed from, described
            once in :class:`autoprune.engine.pruner.PlanInputs` (``model`` is not modified; ``calibration``
            holds training batches for data-driven criteria, never test ones).

    Raises:
        BudgetError: the budget is malformed or cannot be met.
        AutoPruneError: a data-driven criterion without calibration data, unknown names.
    """
    inputs = PlanInputs(model, input_shape, config, calibration, structure)
    if config.granularity != STRUCTURED:
        return mask_plan(inputs)
    structure, scores = channel_scores(inputs)
    if config.keep_ratios is not None:
        counts = structure.keep_counts(config.keep_ratios, round_to=config.round_to)
    else:
        metric = "params" if config.target_params is not None else "macs"
        target = config.target_params if config.target_params is not None else config.target_macs
        assert target is not None
        space = channel_space(structure, target=target, metric=metric, round_to=config.round_to,
                              min_keep_ratio=config.min_keep_ratio)
        counts = global_counts(space, scores) if config.scope == "global" else space.uniform(1.0)
    return plan_for_counts(structure, scores, counts, config)


def prune(
    model: nn.Module,
    input_shape: tuple[int, ...],
    config: PruneConfig,
    *,
    calibration: Iterable[Batch] | None = None,
) -> tuple[nn.Module, PrunePlan]:
    """Compute a plan and apply it to a copy of ``model``.

    Returns:
        ``(pruned_model, plan)``; structured plans give a physically smaller model, mask plans the
        same shapes with zeroed weights.
    """
    plan = compute_plan(model, input_shape, config, calibration=calibration)
    return apply_plan(model, plan), plan
