"""``autoprune search --target-range`` saves one budget-conditioned policy; ``--policy`` answers targets from it.

The answer is checked in a new process (the CLI as a subprocess) against the in-process one, and every
refusal (another model or space, a target outside the trained range, a range with a non-RL searcher) is
one line with exit code 2.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from autoprune.report_schema import schema_problems
from autoprune.search import TrialLog
from autoprune.search.rl import SavedPolicy

from .conftest import FAST, Invoke, search_once

pytestmark = pytest.mark.slow

SMALL = ("--bn-batches", "2", "--rescore-bn-batches", "2", "--no-onnx")
AGENT = ("--searcher-option", "warmup=3", "--searcher-option", "net_arch=32,32", "--searcher-option", "batch_size=16")


@pytest.fixture(scope="module")
def supernet_file(digits_supernet: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sn") / "supernet.pt"
    digits_supernet.supernet.save(path, {"space": digits_supernet.space.to_dict(), "model": "resnet20",
                                         "dataset": "digits"})
    return path


@pytest.fixture(scope="module")
def trained_run(supernet_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short budget-conditioned DDPG run over 0.3:0.7 of the MACs."""
    return search_once(tmp_path_factory, "policy", ["--supernet", str(supernet_file), "--searcher", "ddpg",
                                                    "--target-range", "0.3:0.7", "--trials", "8", *AGENT, *SMALL,
                                                    *FAST])


def test_training_saves_the_policy_and_lists_it(trained_run: Path, digits_supernet: Any) -> None:
    report = json.loads((trained_run / "report.json").read_text())
    assert not schema_problems(report)
    assert report["files"]["policy"] == "policy.zip" and report["files"]["policy_meta"] == "policy.json"
    assert (trained_run / "policy.zip").is_file() and (trained_run / "policy.json").is_file()
    meta = json.loads((trained_run / "policy.json").read_text())
    assert meta["model"] == "resnet20" and meta["dataset"] == "digits" and meta["searcher"] == "ddpg"
    assert meta["target_range"] == [0.3, 0.7] and meta["metric"] == "macs" and meta["episodes"] == 8
    assert list(meta["space"]["groups"]) == digits_supernet.space.names
    assert report["policy"]["target_range"] == [0.3, 0.7] and report["space"]["target"] == 0.7
    targets = [t.info["target"] for t in TrialLog(trained_run).read()]
    assert len(targets) == 8 and all(0.3 <= t <= 0.7 for t in targets)


def _answer_report(folder: Path) -> dict[str, Any]:
    report = json.loads((folder / "report.json").read_text())
    assert not schema_problems(report), schema_problems(report)
    return report


def test_a_saved_policy_answers_in_a_new_process_as_in_this_one(
    trained_run: Path, run_ok: Invoke, digits_supernet: Any, tmp_path: Path
) -> None:
    policy = trained_run / "policy.zip"
    here = tmp_path / "here"
    run_ok(["search", "--policy", str(policy), "--target-macs", "0.45", "--out", str(here), *SMALL, *FAST])
    cmd = [sys.executable, "-m", "autoprune", "search", "--policy", str(policy), "--target-macs", "0.45",
           "--out", str(tmp_path / "there"), *SMALL, *FAST]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _answer_report(here), _answer_report(tmp_path / "there")
    assert a["policy"]["answer"] == b["policy"]["answer"] and a["counts"] == b["counts"]
    space = dataclasses.replace(digits_supernet.space, target=0.45)
    expected = SavedPolicy.load(policy).answer(space, 0.45)
    assert a["policy"]["answer"] == expected and a["policy"]["target"] == 0.45
    # re-scored beside the uniform candidate at the same target, as a search's winner is; the better one exported
    assert {r["source"] for r in a["rescored"]} == {"search", "uniform"} and a["space"]["target"] == 0.45
    assert a["winner"]["counts"] == a["counts"] and space.feasible(a["counts"])
    assert a["pruned"]["macs"] <= 0.45 * a["dense"]["macs"] + 1
    assert a["search"]["trials"] == 1 and a["evaluator"]["calls"] == 0  # no search evaluation, re-scoring only
    assert (here / "plan.json").is_file() and (here / "model.safetensors").is_file()


def test_several_targets_give_one_folder_each(trained_run: Path, run_ok: Invoke, digits_supernet: Any,
                                              tmp_path: Path) -> None:
    out = tmp_path / "many"
    run_ok(["search", "--policy", str(trained_run / "policy.zip"), "--targets", "0.35,0.6", "--out", str(out),
            *SMALL, *FAST])
    answers = json.loads((out / "answers.json").read_text())["answers"]
    assert [a["target"] for a in answers] == [0.35, 0.6] and answers[0]["answer"] != answers[1]["answer"]
    for entry in answers:
        report = _answer_report(out / entry["folder"])
        at = dataclasses.replace(digits_supernet.space, target=entry["target"])
        assert at.feasible(report["policy"]["answer"]) and at.feasible(report["counts"])
        assert report["pruned"]["macs"] <= entry["target"] * report["dense"]["macs"] + 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target-macs", "0.8"], "--target-macs 0.8 is outside the range"),
        (["--targets", "0.4,0.9"], "--targets 0.9 is outside the range"),
        (["--target-params", "0.5"], "give --target-macs 0.5, not --target-params"),
        ([], "--policy answers given targets: add --target-macs"),
        (["--target-macs", "0.5", "--model", "vgg_small"], "trained for --model resnet20, not vgg_small"),
        (["--target-macs", "0.5", "--space", "auto"], "was trained on another search space"),
        (["--target-macs", "0.5", "--target-range", "0.3:0.5"], "drop --target-range"),
    ],
)
def test_a_policy_refuses_what_it_was_not_trained_for(trained_run: Path, invoke: Invoke, tmp_path: Path,
                                                      args: list[str], message: str) -> None:
    result = invoke(["search", "--policy", str(trained_run / "policy.zip"), *args, "--out", str(tmp_path / "x"),
                     *SMALL, *FAST])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_edited_sidecar_is_refused(trained_run: Path, invoke: Invoke, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(trained_run / "policy.zip", copy / "policy.zip")
    meta = json.loads((trained_run / "policy.json").read_text())
    first = next(iter(meta["space"]["groups"]))
    meta["space"]["groups"][first]["counts"] = meta["space"]["groups"][first]["counts"][1:]
    (copy / "policy.json").write_text(json.dumps(meta))
    result = invoke(["search", "--policy", str(copy / "policy.zip"), "--target-macs", "0.5", "--out",
                     str(tmp_path / "x"), *SMALL, *FAST])
    assert result.exit_code == 2 and "does not match the fingerprint it records" in result.output, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--searcher", "tpe", "--target-range", "0.3:0.7"], "--searcher tpe is not one: use --searcher ddpg"),
        (["--searcher", "ddpg", "--target-range", "0.3:0.7", "--target-macs", "0.5"], "drop --target-macs"),
        (["--searcher", "ddpg", "--target-range", "0.7:0.3"], "0 < low <= high <= 1"),
        (["--searcher", "ddpg", "--target-range", "latency:0.3:0.7"], "must be macs or params"),
        (["--searcher", "ddpg", "--target-range", "0.01:0.7"], "cannot be met"),
        (["--searcher", "ddpg", "--targets", "0.3,0.5"], "add --policy"),
    ],
)
def test_bad_training_ranges_are_refused(supernet_file: Path, invoke: Invoke, tmp_path: Path, args: list[str],
                                         message: str) -> None:
    result = invoke(["search", "--supernet", str(supernet_file), *args, "--trials", "2", "--out",
                     str(tmp_path / "x"), *SMALL, *FAST])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_resumed_training_run_keeps_its_range_and_saves_the_longer_policy(
    trained_run: Path, run_ok: Invoke, invoke: Invoke, tmp_path: Path
) -> None:
    run = tmp_path / "resumed"
    shutil.copytree(trained_run, run)
    other = invoke(["search", "--searcher", "ddpg", "--target-range", "0.4:0.7", "--trials", "10", "--resume",
                    "--out", str(run), *AGENT, *SMALL, *FAST])
    assert other.exit_code == 2 and "--target-range 0.4:0.7 (the run has 0.3:0.7)" in other.output, other.output
    run_ok(["search", "--searcher", "ddpg", "--trials", "10", "--resume", "--out", str(run), *AGENT, *SMALL, *FAST])
    trials = TrialLog(run).read()
    assert len(trials) == 10 and all(0.3 <= t.info["target"] <= 0.7 for t in trials)
    assert json.loads((run / "policy.json").read_text())["episodes"] == 10
    assert json.loads((run / "report.json").read_text())["files"]["policy"] == "policy.zip"
