"""The model registry :data:`MODELS`: the built-in models by name, and lookups over them.

It imports only the model definitions, so both :mod:`autoprune.models.zoo` (which builds models by
name) and :mod:`autoprune.models.checkpoint` (whose errors name the model a checkpoint fits) can use it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from autoprune._registry import Registry
from autoprune.models._factory import call_factory
from autoprune.models.mobilenetv2 import mobilenetv2
from autoprune.models.resnet import resnet20, resnet32, resnet56
from autoprune.models.vgg import vgg_small

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
MODELS.register("resnet20", resnet20)
MODELS.register("resnet32", resnet32)
MODELS.register("resnet56", resnet56)
MODELS.register("vgg_small", vgg_small)
MODELS.register("mobilenetv2", mobilenetv2)


def builtin_matching_keys(keys: set[str]) -> list[str]:
    """Registered models whose ``state_dict`` has exactly ``keys`` (with default sizes); for error hints."""
    matches = []
    for name in MODELS.names():
        try:
            model = call_factory(MODELS.get(name), name, num_classes=10, in_channels=3)
        except Exception:  # a user-registered factory may need arguments we cannot guess; skip it
            continue
        if set(model.state_dict()) == keys:
            matches.append(name)
    return matches
