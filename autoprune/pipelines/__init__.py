"""Pipelines: paths through the engine (standard prune -> finetune; sampling and search come later)."""

from autoprune.pipelines.standard import RoundResult, StandardConfig, StandardResult, run_standard

__all__ = ["RoundResult", "StandardConfig", "StandardResult", "run_standard"]
