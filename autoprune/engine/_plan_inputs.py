"""What every plan is computed from, in one place: the model, its input shape, the config, calibration data.

:func:`autoprune.pipelines.prune.compute_plan` takes these as its arguments and hands them on as one
:class:`PlanInputs` to the engine's steps (:func:`autoprune.engine.pruner.channel_scores`,
:func:`autoprune.engine.pruner.mask_plan`), which share its handling of the criterion and its data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from autoprune._types import Batch
from autoprune.engine.importance import Importance, get_importance
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError

if TYPE_CHECKING:
    from autoprune.engine.pruner import PruneConfig


@dataclass
class PlanInputs:
    """The inputs of one plan.

    Attributes:
        model: The (trained) model; not modified.
        input_shape: ``(N, C, H, W)`` of its inputs.
        config: Budget, criterion, granularity and scope.
        calibration: Batches for data-driven criteria (taylor, activation_mean, apoz); drawn from the
            training split, never the test split.
        structure: A ready :class:`ModelStructure` of ``model`` (built when needed if not given).
    """

    model: nn.Module
    input_shape: tuple[int, ...]
    config: PruneConfig
    calibration: Iterable[Batch] | None = None
    structure: ModelStructure | None = None

    def criterion(self) -> Importance:
        """The importance criterion of the config.

        Raises:
            AutoPruneError: a data-driven criterion without calibration data.
        """
        config = self.config
        importance = get_importance(config.criterion, seed=config.seed) if config.criterion == "random" else (
            get_importance(config.criterion)
        )
        if importance.needs_data and self.calibration is None:
            raise AutoPruneError(
                f"criterion {config.criterion!r} needs calibration data: pass a loader of training batches"
            )
        return importance

    def prepare(self, importance: Importance, structure: ModelStructure | None = None) -> None:
        """Let a data-driven criterion read the calibration batches (the others need nothing)."""
        if importance.needs_data:
            structure = structure or self.structure or ModelStructure(self.model, self.input_shape)
            importance.prepare(self.model, structure, self.calibration, max_batches=self.config.calibration_batches)
