"""``autoprune search --workers 2``: two processes on one study, one shared log, one report, shared cores.

Run as a real subprocess (the command re-launches itself for the extra worker from ``sys.argv``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from autoprune.cli.search_support import oversubscription_note, worker_threads
from autoprune.search import TrialLog
from autoprune.search.optuna_liveness import WORKER_ATTR
from autoprune.search.optuna_storage import open_storage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def supernet_file(digits_supernet: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sn") / "supernet.pt"
    digits_supernet.supernet.save(path, {"space": digits_supernet.space.to_dict(), "model": "resnet20"})
    return path


def test_two_workers_share_the_study_and_the_log_exactly(supernet_file: Path, tmp_path: Path) -> None:
    out, total = tmp_path / "run", 150  # enough for the second worker to start (about 6 s) and join
    cmd = [sys.executable, "-m", "autoprune", "search", "--supernet", str(supernet_file), "--searcher", "tpe",
           "--trials", str(total), "--workers", "2", "--out", str(out), "--no-progress", "--threads", "1",
           "--device", "cpu", "--bn-batches", "2", "--no-onnx"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "worker(s) failed" not in proc.stdout + proc.stderr
    assert (out / "worker-1.log").is_file()

    trials = TrialLog(out).read()
    assert [t.number for t in trials] == list(range(total))  # one numbering over both workers' trials
    assert sorted(t.info["optuna_trial"] for t in trials) == list(range(total))  # each study trial logged once
    csv_lines = (out / "trials.csv").read_text().splitlines()
    assert len(csv_lines) == total + 1 and csv_lines.count(csv_lines[0]) == 1  # one header

    storage = open_storage(f"sqlite:///{out / 'study.db'}", heartbeat_interval=None)
    study = optuna.load_study(study_name="autoprune-tpe", storage=storage)
    done = study.get_trials(deepcopy=False)
    assert len(done) == total and all(t.state == optuna.trial.TrialState.COMPLETE for t in done)
    pids = {t.user_attrs[WORKER_ATTR]["pid"] for t in done}
    assert len(pids) == 2, "the second worker ran no trial"

    report = json.loads((out / "report.json").read_text())
    assert report["search"]["trials"] == total and report["config"]["workers"] == 2
    # the winner is fixed from the shared log: one of the top trials of both workers, or the uniform candidate
    logged = {tuple(sorted(t.counts.items())) for t in trials}
    winner = report["winner"]
    searched = {k: v for k, v in winner["counts"].items() if k in trials[0].counts}
    assert winner["source"] == "uniform" or tuple(sorted(searched.items())) in logged
    assert len(report["rescored"]) >= 5
    assert abs(report["pruned"]["macs"] - winner["macs_ratio"] * report["dense"]["macs"]) <= 1


def test_workers_divide_the_threads_between_them() -> None:
    assert worker_threads(4, 2) == 2 and worker_threads(5, 2) == 2 and worker_threads(1, 4) == 1
    assert worker_threads(3, 1) == 3 and worker_threads(None, 1) is None  # one process: as given
    assert worker_threads(None, 2) == max(1, torch.get_num_threads() // 2)  # default: torch's own count


def test_more_workers_than_cores_is_said_in_one_line() -> None:
    assert oversubscription_note(2, 2) is None and oversubscription_note(4, None) is None
    note = oversubscription_note(4, 2)
    assert note is not None and "--workers 4 on 2 CPU cores" in note and "--workers 2 or fewer" in note


def test_each_worker_process_runs_its_share_of_the_threads(supernet_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "autoprune", "search", "--supernet", str(supernet_file), "--searcher", "tpe",
           "--trials", "4", "--workers", "2", "--threads", "4", "--out", str(out), "--no-progress",
           "--device", "cpu", "--bn-batches", "1", "--no-onnx"]  # fmt: skip
    # OMP_NUM_THREADS=1 would give each process 1 thread by default: 2 can only come from 4 // 2
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "main process of 2: 2 torch thread(s)" in proc.stderr
    assert "worker process of 2: 2 torch thread(s)" in (out / "worker-1.log").read_text()
    report = json.loads((out / "report.json").read_text())
    assert report["environment"]["torch_threads"] == 2 and report["config"]["cli"]["threads"] == 4
