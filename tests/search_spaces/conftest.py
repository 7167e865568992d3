"""Fixtures of the search-space tests: model structures built once per session (tracing takes seconds)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from autoprune.engine.structure import ModelStructure
from autoprune.models import build_model

SHAPE = (1, 3, 32, 32)
StructureOf = Callable[[str], ModelStructure]


@pytest.fixture(scope="session")
def structure_of() -> StructureOf:
    """``structure_of("resnet20")``: the structure of a built-in model on 32x32 RGB inputs, cached."""
    cache: dict[str, ModelStructure] = {}

    def get(name: str) -> ModelStructure:
        if name not in cache:
            cache[name] = ModelStructure(build_model(name, num_classes=10, in_channels=3), SHAPE)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def resnet20(structure_of: StructureOf) -> ModelStructure:
    return structure_of("resnet20")
