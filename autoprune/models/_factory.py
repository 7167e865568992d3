"""Calling a model factory with only the size arguments it accepts."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from autoprune.errors import AutoPruneError


class ModelSourceError(AutoPruneError):
    """A model file is missing, or a model factory is not callable or does not return an ``nn.Module``."""


def accepted_kwargs(factory: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """The subset of ``kwargs`` that ``factory`` accepts by keyword (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature (some builtins): try them all
        return dict(kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(kwargs)
    by_keyword = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return {k: v for k, v in kwargs.items() if k in by_keyword}


def call_factory(factory: Callable[..., Any], label: str, *, num_classes: int, in_channels: int) -> nn.Module:
    """Build a model with ``factory``, passing ``num_classes`` / ``in_channels`` only where accepted.

    Args:
        factory: A callable returning an ``nn.Module``.
        label: How to name the factory in errors (``"model 'resnet20'"``, ``"factory 'net' in a.py"``).
        num_classes: Number of outputs the model should have.
        in_channels: Channels of the input images.

    Returns:
        The model the factory returned.

    Raises:
        ModelSourceError: If ``factory`` is not callable or does not return an ``nn.Module``.
    """
    if not callable(factory):
        raise ModelSourceError(
            f"{label} is a {type(factory).__name__}, not a callable that returns an nn.Module"
        )
    model = factory(**accepted_kwargs(factory, num_classes=num_classes, in_channels=in_channels))
    if not isinstance(model, nn.Module):
        raise ModelSourceError(
            f"{label} returned a {type(model).__name__}, expected a torch.nn.Module; "
            "make it return the model instance (e.g. `return MyNet(num_classes=num_classes)`)"
        )
    return model
