"""Fixtures of the CLI tests: the in-process runner and one trained digits checkpoint shared by all.

The runner is ``typer.testing.CliRunner``: this typer (which vendors click) keeps ``stdout`` and
``stderr`` apart and also mixes them in ``output``, in the order a user would see them.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from autoprune.cli import app

Invoke = Callable[[Sequence[str]], Result]

#: Every run stays tiny: one thread, CPU, no progress bars.
FAST = ("--no-progress", "--threads", "1", "--device", "cpu")


def _invoke(args: Sequence[str]) -> Result:
    return CliRunner().invoke(app, list(args))


def _run_ok(args: Sequence[str]) -> Result:
    result = _invoke(args)
    if result.exit_code != 0:
        detail = ""
        if result.exc_info is not None and not isinstance(result.exception, SystemExit):
            detail = "".join(traceback.format_exception(*result.exc_info))
        pytest.fail(f"autoprune {' '.join(args)} exited {result.exit_code}:\n{result.output}\n{detail}")
    return result


@pytest.fixture
def invoke() -> Invoke:
    """Run the CLI in-process; the exit code is the caller's to check."""
    return _invoke


@pytest.fixture
def run_ok() -> Invoke:
    """Run the CLI in-process and fail the test (with output and traceback) unless it exits 0."""
    return _run_ok


@pytest.fixture
def fast() -> tuple[str, ...]:
    """Options that keep a run small: one thread, CPU, no progress bars."""
    return FAST


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """``--threads`` sets torch's global thread count; give later tests (other packages) theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of ``autoprune train`` (resnet20, digits, 1 epoch): model.pt and report.json."""
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("train")
    try:
        _run_ok(["train", "--model", "resnet20", "--dataset", "digits", "--epochs", "1", "--out", str(out), *FAST])
    finally:
        torch.set_num_threads(threads)
    return out


def search_once(factory: pytest.TempPathFactory, name: str, args: Sequence[str]) -> Path:
    """Run ``autoprune search ARGS --out NEW`` once for a module's tests and return its run folder."""
    threads = torch.get_num_threads()
    out = factory.mktemp(name)
    try:
        _run_ok(["search", *args, "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    return out
