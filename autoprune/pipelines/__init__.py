"""Pipelines: paths through the engine (standard prune -> finetune; sub-model sampling; supernet search)."""

from autoprune.pipelines.standard import RoundResult, StandardConfig, StandardResult, run_standard

__all__ = ["RoundResult", "StandardConfig", "StandardResult", "run_standard"]
