"""``--help`` and ``--version`` of the root and of every command, in-process and as ``python -m autoprune``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from typer.testing import Result

from autoprune import __version__
from autoprune.cli import app

Invoke = Callable[[Sequence[str]], Result]

COMMANDS = ("train", "prune", "groups", "demo", "supernet", "extract", "search", "sample", "sensitivity")
RUN_FOLDER_COMMANDS = ("report",)  # take a run folder, not --model/--out
REPO = Path(__file__).resolve().parents[2]


def _flat(text: str) -> str:
    """Help text as one line: no ANSI escapes, no panel borders, single spaces (rich wraps at 80 columns)."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    text = re.sub(r"[│╭╮╰╯─┃]", " ", text)
    return " ".join(text.split())


def test_registered_commands_are_the_documented_ones() -> None:
    names = {c.name for c in app.registered_commands}
    assert names == set(COMMANDS) | set(RUN_FOLDER_COMMANDS)


def test_root_help_lists_every_command(invoke: Invoke) -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0, result.output
    text = _flat(result.stdout)
    assert "Usage: autoprune" in text
    for command in (*COMMANDS, *RUN_FOLDER_COMMANDS):
        assert f" {command} " in text


def test_no_arguments_shows_help_not_a_traceback(invoke: Invoke) -> None:
    result = invoke([])
    assert "Usage: autoprune" in _flat(result.output)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(invoke: Invoke, command: str) -> None:
    result = invoke([command, "--help"])
    assert result.exit_code == 0, result.output
    text = _flat(result.stdout)
    assert f"Usage: autoprune {command} [OPTIONS]" in text
    assert "--model" in text and "--out" in text
    # --model can name a user's file.py:factory, which runs that file's code: the help must say so.
    assert "file.py:factory model RUNS THAT FILE'S CODE" in text
    assert "only use files you trust" in text


def test_prune_help_lists_its_budget_and_criterion_options(invoke: Invoke) -> None:
    text = _flat(invoke(["prune", "--help"]).stdout)
    for option in ("--target-macs", "--criterion", "--granularity", "--rounds", "--checkpoint", "--onnx"):
        assert option in text


def test_version(invoke: Invoke) -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"autoprune {__version__}"


def test_python_dash_m_autoprune_help() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PY_COLORS")}
    proc = subprocess.run(
        [sys.executable, "-m", "autoprune", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**env, "NO_COLOR": "1", "COLUMNS": "100"},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    text = _flat(proc.stdout)
    assert "Usage: python -m autoprune" in text
    for command in COMMANDS:
        assert f" {command} " in text
    assert "Traceback" not in proc.stderr
