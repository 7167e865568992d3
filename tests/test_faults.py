"""Faults: a search killed at a random moment resumes; Ctrl-C stops cleanly; corrupt files and NaN give clear errors.

The kill tests run the real CLI in a subprocess over a saved digits supernet, SIGKILL it once a few trials are
logged, rerun the same command with ``--resume`` and check that the final number of trials is the requested
total, with no finished trial lost or repeated (trial numbers 0..n-1 once each; the first run's trials kept
byte for byte).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from autoprune.search import TrialLog

pytestmark = pytest.mark.slow

FAST = ("--no-progress", "--threads", "1", "--device", "cpu", "--bn-batches", "2", "--no-onnx")


@pytest.fixture(scope="module")
def supernet_file(digits_supernet: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sn") / "supernet.pt"
    digits_supernet.supernet.save(path, {"space": digits_supernet.space.to_dict(), "model": "resnet20"})
    return path


def _command(supernet: Path, out: Path, searcher: str, trials: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "autoprune", "search", "--supernet", str(supernet), "--searcher", searcher,
            "--trials", str(trials), "--out", str(out), *FAST, *extra]


def _start(cmd: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_trials(proc: subprocess.Popen[str], log: TrialLog, n: int, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.jsonl.exists() and len(log.jsonl.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"search ended before {n} trials: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.02)
    pytest.fail(f"no {n} trials within {timeout} s")


@pytest.mark.parametrize("searcher", ["random", "tpe", "ddpg"])
def test_sigkill_then_resume_loses_and_repeats_nothing(supernet_file: Path, tmp_path: Path, searcher: str) -> None:
    out, total = tmp_path / "run", 30
    cmd = _command(supernet_file, out, searcher, total)
    proc = _start(cmd)
    log = TrialLog(out)
    _wait_for_trials(proc, log, 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    text = log.jsonl.read_text()
    # what is whole is what was finished; a torn last line (killed mid-write) is the resume's to drop
    finished = [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = log.read()
    assert [t.number for t in trials] == list(range(total))
    assert [t.to_dict() for t in trials[: len(finished)]] == [json.loads(json.dumps(d)) for d in finished]
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["trials"] == total and report["search"]["resumed_trials"] >= len(finished)


def test_sigint_stops_after_the_current_trial_and_says_how_to_resume(supernet_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(_command(supernet_file, out, "random", 500))
    log = TrialLog(out)
    _wait_for_trials(proc, log, 3)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "--resume" in stderr and "Traceback" not in stderr
    trials = log.read()  # every line whole: the interrupted trial was finished and logged
    assert 3 <= len(trials) < 500 and [t.number for t in trials] == list(range(len(trials)))


def test_a_corrupt_supernet_checkpoint_is_named_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "supernet.pt"
    bad.write_bytes(b"\x80\x04not a checkpoint")
    proc = subprocess.run(_command(bad, tmp_path / "run", "random", 3), capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and str(bad) in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("stage", ["dense", "supernet"])
def test_sigkill_during_a_training_stage_resumes_after_its_finished_epochs(tmp_path: Path, stage: str) -> None:
    """A search that trains its own dense model and supernet, killed in either stage: the resume keeps the
    finished epochs (OUT/dense.partial.pt, OUT/supernet.pt), finishes, and the stage's history is whole."""
    import torch

    from autoprune.models.checkpoint import read_checkpoint

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "autoprune", "search", "--searcher", "random", "--trials", "2", "--train-epochs",
           "8", "--supernet-epochs", "4", "--out", str(out), *FAST]
    proc = _start(cmd)
    watched = out / ("dense.partial.pt" if stage == "dense" else "supernet.pt")
    deadline = time.monotonic() + 240
    while not watched.is_file():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, f"no {watched.name} within 240 s"
        time.sleep(0.02)
    time.sleep(0.2)  # the file is replaced atomically; let one more epoch maybe finish
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if stage == "dense":
        assert not (out / "dense.pt").exists()
        done = torch.load(watched, weights_only=True)["epoch"]
        first_losses = torch.load(watched, weights_only=True)["history"]["train_loss"]
    else:
        assert (out / "dense.pt").is_file() and not (out / "dense.partial.pt").exists()
        first_losses = read_checkpoint(watched)[1]["history"]["largest_loss"]
        done = len(first_losses)
    assert 1 <= done < (8 if stage == "dense" else 4)
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = " ".join(resumed.stderr.split())  # rich wraps long lines
    if stage == "dense":
        assert "resuming after its last finished epoch" in said
        assert not (out / "dense.partial.pt").exists() and (out / "dense.pt").is_file()
    else:
        assert "trained by an earlier run" in said  # the dense model is not trained again
        history = read_checkpoint(out / "supernet.pt")[1]["history"]["largest_loss"]
        assert len(history) == 4 and history[:done] == first_losses  # finished epochs kept, not redone
    assert json.loads((out / "report.json").read_text())["search"]["trials"] == 2


def test_train_killed_then_rerun_resumes_after_its_finished_epochs(tmp_path: Path) -> None:
    """`autoprune train` keeps every finished epoch (OUT/model.partial.pt): the same command again continues
    there and finishes with the whole history; once finished, the folder is not trained over."""
    import torch

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "autoprune", "train", "--train-epochs", "8", "--out", str(out), "--no-progress",
           "--threads", "1", "--device", "cpu"]
    proc = _start(cmd)
    partial = out / "model.partial.pt"
    deadline = time.monotonic() + 240
    while not partial.is_file():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "no model.partial.pt within 240 s"
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "model.pt").exists()
    state = torch.load(partial, weights_only=True)
    done, first_losses = state["epoch"], state["history"]["train_loss"]
    assert 1 <= done < 8
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    other_lr = subprocess.run([*cmd, "--lr", "0.2"], capture_output=True, text=True, timeout=300, env=env)
    assert other_lr.returncode == 2 and "--lr 0.2 (the run has 0.05)" in " ".join(other_lr.stderr.split())
    assert torch.load(partial, weights_only=True)["epoch"] == done  # refused before touching it
    more_threads = [*cmd[:-4], "--threads", "2", "--device", "cpu"]  # threads do not define the run
    resumed = subprocess.run(more_threads, capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = " ".join((resumed.stdout + resumed.stderr).split())
    assert "resuming" in said and f"epoch {done + 1}/8 finished" in said and "epoch 1/8 finished" not in said
    history = json.loads((out / "report.json").read_text())["training"]["history"]["train_loss"]
    assert len(history) == 8 and history[:done] == first_losses  # finished epochs kept, not redone
    assert not partial.exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 2 and "finished train run" in again.stderr and "Traceback" not in again.stderr


def test_sample_killed_then_rerun_keeps_its_finished_finetunings(digits_supernet: Any, tmp_path: Path) -> None:
    """`autoprune sample` keeps every finished top-k finetuning (OUT/partial): the same command again scores and
    finetunes none of them again, and once finished the folder is not sampled over."""
    from autoprune.models import save_checkpoint

    dense = save_checkpoint(digits_supernet.dense, tmp_path / "dense.pt", {"model": "resnet20"})
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "autoprune", "sample", "--checkpoint", str(dense), "--samples", "6", "--top-k", "6",
           "--finetune-batches", "10", "--final-epochs", "1", "--val-batches", "3", "--out", str(out), *FAST]
    proc = _start(cmd)
    deadline = time.monotonic() + 240
    while len(kept := sorted((out / "partial").glob("candidate-*.pt"))) < 2:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "no two finished finetunings within 240 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "report.json").exists()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = " ".join((resumed.stdout + resumed.stderr).split())
    assert "continuing the unfinished sample run" in said
    for path in kept:  # read back, not finetuned again
        index = path.stem.removeprefix("candidate-")
        assert re.search(rf"candidate {index}: finetuned val accuracy [0-9.]+ \(finished earlier\)", said), said
    report = json.loads((out / "report.json").read_text())
    assert report["resumed"] is True and len(report["sampling"]["top_k"]) == 6
    assert not (out / "partial").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 2 and "finished sample run" in again.stderr and "Traceback" not in again.stderr
