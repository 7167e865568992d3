"""Fixtures of the environment tests: the session's digits supernet saved as a file, as ``autoprune supernet`` does."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def supernet_file(digits_supernet, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """``digits_supernet`` written to ``supernet.pt`` with its model, dataset and space (target 0.5 MACs)."""
    path = tmp_path_factory.mktemp("supernet") / "supernet.pt"
    meta = {"model": "resnet20", "dataset": "digits", "space": digits_supernet.space.to_dict()}
    return digits_supernet.supernet.save(path, meta)
