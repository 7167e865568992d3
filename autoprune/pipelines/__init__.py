"""Pipelines: paths through the engine (standard prune -> finetune; sub-model sampling; supernet search)."""

from autoprune.pipelines.prune import compute_plan, prune
from autoprune.pipelines.standard import RoundResult, StandardConfig, StandardResult, run_standard

__all__ = ["RoundResult", "StandardConfig", "StandardResult", "compute_plan", "prune", "run_standard"]
