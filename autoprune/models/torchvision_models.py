"""Untrained torchvision classification models, named ``torchvision:<name>``.

Weights are never downloaded: every model is built with ``weights=None``; load your own with
``build_model(..., weights=path)``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torchvision
from torch import nn

from autoprune._registry import Registry
from autoprune.errors import UnknownNameError

PREFIX = "torchvision:"

#: Extra keyword arguments some models need to build without pretrained weights: GoogLeNet and
#: Inception-v3 would otherwise add auxiliary heads (a tuple output in train mode) and warn about
#: their default initialization.
_EXTRA_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def torchvision_names() -> list[str]:
    """Sorted names of torchvision's classification models (without the ``torchvision:`` prefix)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_torchvision(name: str, *, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build an untrained torchvision classification model.

    Args:
        name: A name from :func:`torchvision_names`, without the prefix (``"resnet18"``).
        num_classes: Outputs of the classifier.
        in_channels: Channels of the input images; if not 3, the first ``Conv2d`` is replaced by one with
            the same settings and ``in_channels`` inputs (Kaiming-initialized).

    Returns:
        The model.

    Raises:
        UnknownNameError: If ``name`` is not a torchvision classification model (with close matches).
        ValueError: If the input channels cannot be changed (no ``Conv2d`` or a grouped first conv).
    """
    names = torchvision_names()
    if name not in names:
        known: Registry[str] = Registry("torchvision model")
        for known_name in names:
            known.register(known_name, known_name)
        raise UnknownNameError(known.unknown_message(name, f" Use it as '{PREFIX}<name>'."))
    with warnings.catch_warnings():
        # Only the initialization notices of GoogLeNet/Inception; nothing else is silenced.
        warnings.filterwarnings("ignore", message="The default weight initialization", category=FutureWarning)
        model = torchvision.models.get_model(
            name, weights=None, num_classes=num_classes, **_EXTRA_KWARGS.get(name, {})
        )
    if in_channels != 3:
        replace_first_conv(model, in_channels, label=f"{PREFIX}{name}")
    return model


def replace_first_conv(model: nn.Module, in_channels: int, *, label: str = "the model") -> nn.Conv2d:
    """Swap the first ``Conv2d`` (in ``named_modules`` order) for one taking ``in_channels`` inputs.

    Args:
        model: The model, changed in place.
        in_channels: The new number of input channels.
        label: How to name the model in errors.

    Returns:
        The new convolution.

    Raises:
        ValueError: If the model has no ``Conv2d`` or its first one is grouped.
    """
    found = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None:
        raise ValueError(f"{label} has no Conv2d, so its input channels cannot be set to {in_channels}")
    path, old = found
    if old.groups != 1:
        raise ValueError(
            f"the first conv of {label} ({path!r}) is grouped (groups={old.groups}); "
            f"cannot change its input channels to {in_channels}"
        )
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,  # type: ignore[arg-type]  # a tuple, accepted at runtime
        stride=old.stride,  # type: ignore[arg-type]
        padding=old.padding,  # type: ignore[arg-type]
        dilation=old.dilation,  # type: ignore[arg-type]
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path), attr, new)
    return new
