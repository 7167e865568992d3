"""Importance criteria: one score per channel of a group, higher = more important.

A criterion is an :class:`Importance` registered by name in :data:`IMPORTANCES`; get one with
:func:`get_importance`. Built in: ``l1``, ``l2`` (group weight magnitude), ``bn_scale`` (BatchNorm
``|gamma|``), ``taylor`` (first-order Taylor, needs data), ``activation_mean`` and ``apoz`` (activations,
need data) and ``random``.
"""

from __future__ import annotations

from autoprune.engine.importance._activation import (
    ActivationImportance,
    ActivationMeanImportance,
    APoZImportance,
)
from autoprune.engine.importance._base import IMPORTANCES, Importance, get_importance, register_importance
from autoprune.engine.importance._magnitude import (
    BNScaleImportance,
    GroupMagnitudeImportance,
    L1Importance,
    L2Importance,
)
from autoprune.engine.importance._random import RandomImportance
from autoprune.engine.importance._taylor import TaylorImportance

__all__ = [
    "IMPORTANCES",
    "APoZImportance",
    "ActivationImportance",
    "ActivationMeanImportance",
    "BNScaleImportance",
    "GroupMagnitudeImportance",
    "Importance",
    "L1Importance",
    "L2Importance",
    "RandomImportance",
    "TaylorImportance",
    "get_importance",
    "register_importance",
]
