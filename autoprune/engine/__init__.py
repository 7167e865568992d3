"""The pruning engine: groups, importance criteria, plans, masks and export (budgets: the search space).

Small and exact on purpose: everything later (sampling, supernet, searchers) calls it.
"""

from autoprune.engine.deploy import DeployWarning, optimize_for_inference
from autoprune.engine.export import export_onnx, load_pruned, save_weights
from autoprune.engine.importance import IMPORTANCES, Importance, get_importance, register_importance
from autoprune.engine.masking import MaskEnforcer
from autoprune.engine.plan import GRANULARITIES, PrunePlan, apply_masks, apply_plan, channel_masks
from autoprune.engine.pruner import (
    DEFAULT_ROUND_TO,
    PruneConfig,
    channel_scores,
    compose_plans,
    mask_plan,
    plan_for_counts,
)
from autoprune.engine.structure import GroupMember, ModelStructure, PrunableGroup, UnsupportedLayerWarning
from autoprune.engine.unstructured import make_mask_plan, mask_cost

__all__ = [
    "DEFAULT_ROUND_TO",
    "GRANULARITIES",
    "IMPORTANCES",
    "DeployWarning",
    "GroupMember",
    "Importance",
    "MaskEnforcer",
    "ModelStructure",
    "PrunableGroup",
    "PruneConfig",
    "PrunePlan",
    "UnsupportedLayerWarning",
    "apply_masks",
    "apply_plan",
    "channel_masks",
    "channel_scores",
    "compose_plans",
    "export_onnx",
    "get_importance",
    "load_pruned",
    "make_mask_plan",
    "mask_cost",
    "mask_plan",
    "optimize_for_inference",
    "plan_for_counts",
    "register_importance",
    "save_weights",
]
