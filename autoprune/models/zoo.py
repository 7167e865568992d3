""":func:`build_model`, the one entry point the rest of autoprune uses to build a model by name.

A model name is one of:

* a registered name (:data:`MODELS`): ``resnet20``, ``resnet32``, ``resnet56``, ``vgg_small``,
  ``mobilenetv2``, or anything added with ``MODELS.register(name, factory)``;
* ``torchvision:<name>``: an untrained torchvision classification model (``torchvision:resnet18``);
* ``path/to/file.py:factory``: a factory in the user's own file, **whose code is run** (see
  :mod:`autoprune.models.user_file`).

Factories are called with ``num_classes=`` and ``in_channels=`` where their signature accepts them.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from autoprune.errors import UnknownNameError
from autoprune.models._factory import call_factory
from autoprune.models.checkpoint import load_checkpoint_into
from autoprune.models.registry import MODELS
from autoprune.models.torchvision_models import PREFIX, build_torchvision, torchvision_names
from autoprune.models.user_file import build_from_file, split_file_spec

_OTHER_FORMS = f" Also accepted: '{PREFIX}<name>' (e.g. '{PREFIX}resnet18') and 'path/to/file.py:factory'."


def model_names() -> list[str]:
    """The registered model names, then every torchvision classification model as ``torchvision:<name>``."""
    return MODELS.names() + [PREFIX + name for name in torchvision_names()]


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    weights: str | Path | None = None,
) -> nn.Module:
    """Build a model by name, optionally loading weights into it.

    Args:
        name: A registered name, ``torchvision:<name>`` or ``path/to/file.py:factory`` (see the module
            docstring; the last one runs the file's code).
        num_classes: Outputs of the classifier.
        in_channels: Channels of the input images (1 for grayscale).
        weights: A checkpoint to load with :func:`~autoprune.models.checkpoint.load_checkpoint_into`
            (strict; never unpickles code).

    Returns:
        The model, in training mode, on the CPU.

    Raises:
        UnknownNameError: If the name, the torchvision model or the file's factory does not exist (with
            close matches).
        ModelSourceError: If a model file is missing or its factory does not return an ``nn.Module``.
        CheckpointError: If ``weights`` cannot be loaded safely or does not fit the model.
    """
    if name.startswith(PREFIX):
        model = build_torchvision(name[len(PREFIX) :], num_classes=num_classes, in_channels=in_channels)
    elif (file_spec := split_file_spec(name)) is not None:
        path, factory = file_spec
        model = build_from_file(path, factory, num_classes=num_classes, in_channels=in_channels)
    elif name in MODELS:
        model = call_factory(
            MODELS.get(name), f"model {name!r}", num_classes=num_classes, in_channels=in_channels
        )
    else:
        raise UnknownNameError(MODELS.unknown_message(name, _OTHER_FORMS))
    if weights is not None:
        load_checkpoint_into(model, weights)
    return model

