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


def test_help_imports_no_heavy_library() -> None:
    """``autoprune --help`` loads the command line only: torch, torchvision, sklearn, optuna and SB3 wait for a
    command that needs them (help took 4-6 s and 1.1 GB when they were imported up front)."""
    code = ("import sys, autoprune, autoprune.cli\n"
            "from typer.testing import CliRunner\n"
            "assert CliRunner().invoke(autoprune.cli.app, ['--help']).exit_code == 0\n"
            "assert CliRunner().invoke(autoprune.cli.app, ['search', '--help']).exit_code == 0\n"
            "heavy = {'torch', 'torchvision', 'sklearn', 'optuna', 'stable_baselines3', 'gymnasium', 'matplotlib'}\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & heavy)\n"
            "print(heavy)\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_one_vocabulary_the_same_concept_is_the_same_option_with_the_same_default() -> None:
    import typer.main

    from autoprune.cli import app

    group = typer.main.get_command(app)
    options: dict[str, dict[str, object]] = {}  # command -> {flag: default}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        options[name] = {flag: p.default for p in command.params for flag in p.opts if flag.startswith("--")}
    exports = ("prune", "search", "extract", "sample")
    for name, flags in options.items():
        if "--target-macs" in flags:
            assert "--target-params" in flags, name  # every budget option where a budget applies
            assert flags["--target-macs"] is None, name  # one default (0.5) applied in one place
        if name in ("train", "prune", "search", "supernet", "sample", "sensitivity", "demo"):
            assert "--train-epochs" in flags, name
        if name in ("search", "supernet", "demo"):
            assert "--supernet-epochs" in flags, name
        if name != "report":
            for shared in ("--seed", "--device" if name != "demo" else "--seed", "--threads", "--out", "--overwrite"):
                assert shared in flags, (name, shared)
        if name in exports:
            assert "--onnx" in flags, name
    assert {options[n]["--round-to"] for n in options if "--round-to" in options[n]} == {8}
    for name in ("search", "sample", "sensitivity"):
        assert {"--val-batch-size", "--val-batches"} <= set(options[name]), name
    for name in options:  # flags take no value and are not shown as if they did
        assert "<bool>" not in _flat(_help(name)).replace("--help <bool>", ""), name


def _help(command: str) -> str:
    from typer.testing import CliRunner

    from autoprune.cli import app

    return CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
