"""The importance-criterion extension point: the base class, its registry and the lookup by name."""

from __future__ import annotations

import abc
import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from autoprune._device import model_device
from autoprune._registry import Registry
from autoprune._types import Batch
from autoprune.engine.structure import ModelStructure, PrunableGroup
from autoprune.errors import AutoPruneError


class Importance(abc.ABC):
    """Scores the channels of a group; higher = more important (kept first).

    The engine calls :meth:`prepare` once per model, before scoring, then ``criterion(group)`` for every
    group it prunes. Criteria with ``needs_data = True`` read calibration batches in :meth:`prepare` and
    refuse to score before it ran; the others ignore the loader.

    Attributes:
        name: The name the criterion is registered under (set by :func:`register_importance`).
        needs_data: Whether :meth:`prepare` needs a calibration loader.
    """

    name: ClassVar[str] = "<unregistered>"
    needs_data: ClassVar[bool] = False

    def prepare(
        self,
        model: nn.Module,
        structure: ModelStructure,
        loader: Iterable[Batch] | None,
        *,
        max_batches: int = 8,
    ) -> None:
        """Collect statistics (activations, gradients) over calibration batches, if the criterion needs data.

        Criteria with ``needs_data = True`` gather them in :meth:`_collect`, which sees the model in eval
        mode; its train/eval mode is restored afterwards. The others do nothing here.

        Args:
            model: The model whose groups will be scored; left unchanged (weights, ``.grad``, BN
                statistics and train/eval mode).
            structure: The model's groups.
            loader: Calibration batches ``(inputs, targets)``; ``None`` for criteria without data.
            max_batches: Use at most this many batches of ``loader``.

        Raises:
            AutoPruneError: the criterion needs data and ``loader`` is ``None`` or empty.
        """
        if not self.needs_data:
            return
        was_training = model.training
        model.eval()
        try:
            self._collect(model, structure, calibration_batches(self, model, loader, max_batches))
        finally:
            model.train(was_training)

    def _collect(self, model: nn.Module, structure: ModelStructure, batches: Iterator[Batch]) -> None:  # noqa: B027
        """Gather statistics from ``batches`` (on the model's device; the model is in eval mode).

        Called by :meth:`prepare` for criteria with ``needs_data = True``. Default: nothing. Raises what
        ``batches`` raises (no loader, empty loader).
        """

    @abc.abstractmethod
    def __call__(self, group: PrunableGroup) -> torch.Tensor:
        """One score per channel of ``group``.

        Returns:
            A finite float32 CPU tensor of shape ``(group.channels,)``, indexed like the root layer's
            output channels.
        """

    def unstructured_scores(self, param: torch.Tensor, name: str) -> torch.Tensor:
        """Per-weight scores for mask granularities (kernel, vector, fine).

        Args:
            param: A parameter of the model.
            name: Its name in ``model.named_parameters()`` (e.g. ``"layer1.0.conv1.weight"``).

        Returns:
            A finite float32 tensor shaped like ``param``, on ``param``'s device.

        Raises:
            AutoPruneError: the criterion only scores whole channels.
        """
        default = Importance.unstructured_scores
        supported = ", ".join(n for n in IMPORTANCES if IMPORTANCES.get(n).unstructured_scores is not default)
        raise AutoPruneError(
            f"criterion {self.name!r} does not support unstructured granularities; use {supported}"
        )

    def _no_data_error(self) -> AutoPruneError:
        return AutoPruneError(
            f"criterion {self.name!r} needs calibration data: call prepare(model, structure, loader) with a "
            "loader of (inputs, targets) batches before scoring, or pick a criterion without data "
            "(l1, l2, bn_scale, random)"
        )


IMPORTANCES: Registry[type[Importance]] = Registry("criterion")
ImportanceT = TypeVar("ImportanceT", bound=Importance)


def register_importance(name: str) -> Callable[[type[ImportanceT]], type[ImportanceT]]:
    """Class decorator: register an :class:`Importance` subclass under ``name`` and set its ``name``."""

    def wrap(cls: type[ImportanceT]) -> type[ImportanceT]:
        cls.name = name
        IMPORTANCES.register(name, cls)
        return cls

    return wrap


def get_importance(name: str, **kwargs: Any) -> Importance:
    """A new criterion by registered name.

    Args:
        name: One of ``IMPORTANCES.names()``.
        **kwargs: Constructor arguments (e.g. ``seed`` for ``random``).

    Raises:
        UnknownNameError: unknown ``name`` (with the closest and all valid names).
        AutoPruneError: ``kwargs`` the criterion does not accept.
    """
    cls = IMPORTANCES.get(name)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        params = [p for p in inspect.signature(cls).parameters if p not in ("args", "kwargs")]
        accepted = ", ".join(params) if params else "no arguments"
        raise AutoPruneError(
            f"criterion {name!r} does not accept {kwargs} ({exc}); it takes {accepted}"
        ) from None
    return cls(**kwargs)


def finalize(scores: torch.Tensor | None, group: PrunableGroup) -> torch.Tensor:
    """Scores as the contract wants them: float32, CPU, finite, shape ``(group.channels,)``.

    ``None`` (a group with nothing to score, e.g. only unwrapped parameters) gives all zeros.
    """
    if scores is None:
        return torch.zeros(group.channels)
    out = torch.nan_to_num(scores.detach().to("cpu", torch.float32), nan=0.0)
    if out.shape != (group.channels,):
        raise AutoPruneError(
            f"internal error: scores for group {group.name!r} have shape {tuple(out.shape)}, "
            f"expected ({group.channels},)"
        )
    return out


def finalize_weights(scores: torch.Tensor) -> torch.Tensor:
    """Per-weight scores as float32 and finite, on their device."""
    return torch.nan_to_num(scores.detach().float(), nan=0.0)


def calibration_batches(
    criterion: Importance, model: nn.Module, loader: Iterable[Batch] | None, max_batches: int
) -> Iterator[Batch]:
    """Up to ``max_batches`` batches of ``loader``, moved to the model's device.

    Raises:
        AutoPruneError: no loader, ``max_batches < 1`` or an empty loader.
    """
    if loader is None:
        raise criterion._no_data_error()
    if max_batches < 1:
        raise AutoPruneError(
            f"max_batches={max_batches} must be >= 1: it is how many calibration batches to use"
        )
    device = model_device(model)
    seen = 0
    for batch in itertools.islice(loader, max_batches):  # never loads a batch it does not use
        seen += 1
        yield batch[0].to(device), batch[1].to(device)
    if seen == 0:
        raise AutoPruneError(
            f"criterion {criterion.name!r} got an empty calibration loader; "
            "pass a loader with at least one batch"
        )
