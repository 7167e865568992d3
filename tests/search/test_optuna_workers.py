"""Several worker processes on one Optuna study: the total is exact, no trial lost or duplicated.

Two processes run the ``tpe`` searcher over the same study (SQLite here always; PostgreSQL when
``AUTOPRUNE_TEST_POSTGRES_URL`` is set, as ``.ci/run`` does) with ``total_trials`` = N; the study ends with
exactly N complete trials numbered 0..N-1, and the two workers' ``trials.jsonl`` logs hold each of them once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest

from autoprune.search.optuna_storage import open_storage

WORKER = Path(__file__).with_name("_optuna_worker.py")
TOTAL = 20


def _run_workers(storage: str, tmp_path: Path, workers: int = 2) -> None:
    study_name = f"workers-{uuid.uuid4().hex[:8]}"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), storage, study_name, str(TOTAL), str(tmp_path / f"w{i}"), str(i),
             str(barrier), str(workers)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        for i in range(workers)
    ]
    done = [(p, *p.communicate(timeout=300)) for p in procs]
    for p, _, err in done:
        assert p.returncode == 0, err.decode()[-3000:]
    per_worker = [json.loads(out.decode().strip().splitlines()[-1])["trials"] for _, out, _ in done]

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage, heartbeat_interval=None))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == TOTAL
    assert sorted(t.number for t in trials) == list(range(TOTAL))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sum(per_worker) == TOTAL and min(per_worker) >= 1, per_worker  # both really worked
    logged = [json.loads(line) for i in range(workers) for line in (tmp_path / f"w{i}" / "trials.jsonl").open()]
    assert sorted(t["info"]["optuna_trial"] for t in logged) == list(range(TOTAL))
    assert sum(bool(t.user_attrs.get("seeded")) for t in trials) == 1  # the uniform seed, enqueued once


@pytest.mark.slow  # multi-process or many epochs: kept out of the ~10 min fast suite
def test_two_workers_on_one_sqlite_study(tmp_path: Path) -> None:
    _run_workers(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)


@pytest.mark.slow
def test_two_workers_on_one_journal_file(tmp_path: Path) -> None:
    _run_workers(f"journal:{tmp_path / 'study.log'}", tmp_path)


@pytest.mark.slow
@pytest.mark.skipif("AUTOPRUNE_TEST_POSTGRES_URL" not in os.environ,
                    reason="set AUTOPRUNE_TEST_POSTGRES_URL (.ci/run starts a PostgreSQL server and sets it)")
def test_two_workers_on_one_postgresql_study(tmp_path: Path) -> None:
    _run_workers(os.environ["AUTOPRUNE_TEST_POSTGRES_URL"], tmp_path)


DIES = Path(__file__).with_name("_die_between_log_and_tell.py")


def test_a_trial_logged_but_not_told_is_told_on_resume_not_rerun(tmp_path: Path) -> None:
    """Killed after writing trial 3 to trials.jsonl and before telling the study: the resume tells it."""
    storage, out, total = f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "run", 8
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    died = subprocess.run([sys.executable, str(DIES), storage, str(out), str(total), "3", "0"],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert died.returncode == 9, died.stderr[-3000:]
    logged = [json.loads(line) for line in (out / "trials.jsonl").open()]
    assert [t["number"] for t in logged] == [0, 1, 2, 3]
    study = optuna.load_study(study_name="s", storage=open_storage(storage, heartbeat_interval=None))
    assert study.trials[3].state == optuna.trial.TrialState.RUNNING  # the kill left it there

    resumed = subprocess.run([sys.executable, str(DIES), storage, str(out), str(total), "-1", "1"],
                             capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1]) == {"trials": total, "evaluations": total - 4}
    final = [json.loads(line) for line in (out / "trials.jsonl").open()]
    assert [t["number"] for t in final] == list(range(total)) and final[:4] == logged
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == total and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert trials[3].values == [logged[3]["result"]["accuracy"]]  # told the logged score, not re-evaluated
    assert [t["info"]["optuna_trial"] for t in final] == list(range(total))
