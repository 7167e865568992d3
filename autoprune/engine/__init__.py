"""The pruning engine: groups, importance criteria, budgets, plans, masks and export.

Small and exact on purpose: everything later (sampling, supernet, searchers) calls it.
"""

from autoprune.engine.deploy import DeployWarning, optimize_for_inference
from autoprune.engine.export import export_onnx, load_pruned, save_weights
from autoprune.engine.importance import IMPORTANCES, Importance, get_importance, register_importance
from autoprune.engine.masking import MaskEnforcer
from autoprune.engine.plan import GRANULARITIES, PrunePlan, apply_masks, apply_plan, channel_masks
from autoprune.engine.pruner import DEFAULT_ROUND_TO, PruneConfig, compose_plans, compute_plan, prune
from autoprune.engine.structure import GroupMember, ModelStructure, PrunableGroup, UnsupportedLayerWarning
from autoprune.engine.targets import global_keep_counts, uniform_keep_counts
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
    "compose_plans",
    "compute_plan",
    "export_onnx",
    "get_importance",
    "global_keep_counts",
    "load_pruned",
    "make_mask_plan",
    "mask_cost",
    "optimize_for_inference",
    "prune",
    "register_importance",
    "save_weights",
    "uniform_keep_counts",
]
