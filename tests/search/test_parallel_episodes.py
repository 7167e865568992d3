"""Parallel episodes (``--workers N`` for RL searchers and random search): a pool of evaluator processes.

Checked: a two-worker search ends with exactly the requested trials, all logged in order and within budget,
scored as the calling process would score them; the proposals do not depend on which worker finished first;
a search killed with SIGKILL resumes to exactly the requested trials, without duplicates, and leaves no
worker behind; workers run their share of the threads; a worker that cannot build its evaluator stops the
search with its reason; searchers that need each result first are refused.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from autoprune.errors import AutoPruneError
from autoprune.search import SearchConfig, TrialLog, make_searcher, run_search
from autoprune.search.pool import EvaluatorPool, ParallelConfig, SupernetEvaluatorFactory
from autoprune.search.rl import RLSearcher

HERE = Path(__file__).resolve().parent
FAST = {"warmup": 3, "net_arch": (32, 32), "batch_size": 16, "episodes_per_update": 2}


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``_parallel_helpers``, importable by name here and in spawned workers (they inherit ``sys.path``)."""
    monkeypatch.syspath_prepend(str(HERE))
    import _parallel_helpers

    return _parallel_helpers


@pytest.fixture(scope="module")
def supernet_file(digits_supernet: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sn") / "supernet.pt"
    digits_supernet.supernet.save(path, {"space": digits_supernet.space.to_dict(), "model": "resnet20"})
    return path


@pytest.mark.slow  # multi-process or many epochs: kept out of the ~10 min fast suite
def test_two_workers_run_exactly_the_requested_episodes_all_logged_within_budget(
    digits_supernet: Any, supernet_file: Path, tmp_path: Path
) -> None:
    space, total = digits_supernet.space, 10
    factory = SupernetEvaluatorFactory(str(supernet_file), "resnet20", "digits", val_batch_size=64, bn_batches=2,
                                       holdout=0.0)  # all of validation, as the evaluator of this process
    searcher = make_searcher("ddpg", space, seed=0, **FAST)
    result = run_search(searcher, digits_supernet.evaluator(), SearchConfig(trials=total), out=tmp_path,
                        progress=False, parallel=ParallelConfig(2, factory, threads=1))  # fmt: skip
    logged = TrialLog(tmp_path).read()
    assert [t.number for t in result.trials] == [t.number for t in logged] == list(range(total))
    assert [t.to_dict() for t in logged] == [t.to_dict() for t in result.trials]
    assert all(t.state == "complete" and t.feasible and space.feasible(t.counts) for t in logged)
    assert all(t.macs_ratio is not None and t.macs_ratio <= space.target + 0.02 for t in logged)
    memoized = sum(bool(t.info.get("memoized")) for t in logged)
    assert result.evaluations + memoized == total
    assert isinstance(searcher, RLSearcher) and searcher.episodes == total and len(searcher.history) == total
    here = digits_supernet.evaluator()  # the workers score as this process would (same supernet, data, BN)
    for t in logged[:3]:
        mine = here.evaluate(t.counts)
        assert t.result is not None and t.result.accuracy == mine.accuracy
        assert t.result.loss == pytest.approx(mine.loss, rel=1e-4)


@pytest.mark.slow  # multi-process or many epochs: kept out of the ~10 min fast suite
def test_proposals_do_not_depend_on_which_worker_finishes_first(helpers: Any, tmp_path: Path) -> None:
    space, total = helpers.tiny_space(), 16
    runs = []
    for k in range(2):
        searcher = make_searcher("ddpg", space, seed=5, **FAST)
        evaluator = helpers.JitteryFactory(max_sleep_s=0.0)()
        started = tmp_path / f"started-{k}"  # both workers evaluate at once, however slowly the second one starts
        started.mkdir()
        # sleeps up to 0.4 s: long beside a loaded machine's scheduling delays, so the finishing order is random
        factory = helpers.JitteryFactory(max_sleep_s=0.4, fail_every=7, started=str(started), barrier=2)
        config = ParallelConfig(2, factory, threads=1)
        runs.append(run_search(searcher, evaluator, SearchConfig(trials=total), progress=False, parallel=config))
    assert [t.counts for t in runs[0].trials] == [t.counts for t in runs[1].trials]
    assert [t.state for t in runs[0].trials] == [t.state for t in runs[1].trials]
    assert len({tuple(sorted(t.counts.items())) for t in runs[0].trials}) > 1  # the agent explores
    finished = [t.result.seconds for r in runs for t in r.trials if t.result is not None and not t.info.get("memoized")]
    assert any(b < a for a, b in itertools.pairwise(finished)), "workers always finished in order"
    assert {t.result.params for r in runs for t in r.trials if t.result is not None} == {1}  # threads per worker


@pytest.mark.slow  # multi-process or many epochs: kept out of the ~10 min fast suite
@pytest.mark.parametrize("name", ["ppo", "sac"])
def test_ppo_and_sac_learn_from_episodes_asked_ahead(helpers: Any, name: str) -> None:
    space, total = helpers.tiny_space(), 8
    searcher = make_searcher(name, space, seed=1, **FAST)
    result = run_search(searcher, helpers.JitteryFactory(0.0)(), SearchConfig(trials=total), progress=False,
                        parallel=ParallelConfig(2, helpers.JitteryFactory(0.05), threads=1))  # fmt: skip
    assert isinstance(searcher, RLSearcher) and searcher.episodes == total and not searcher._pending
    assert len(searcher.rewards) == total and all(space.feasible(t.counts) for t in result.trials)


def test_random_search_proposes_the_same_with_two_workers_as_with_one(helpers: Any) -> None:
    space = helpers.tiny_space()
    one = run_search(make_searcher("random", space, seed=2), helpers.JitteryFactory(0.0)(), SearchConfig(trials=8),
                     progress=False)  # fmt: skip
    two = run_search(make_searcher("random", space, seed=2), helpers.JitteryFactory(0.0)(), SearchConfig(trials=8),
                     progress=False, parallel=ParallelConfig(2, helpers.JitteryFactory(0.05), threads=1))  # fmt: skip
    assert [t.counts for t in one.trials] == [t.counts for t in two.trials]
    assert [t.accuracy for t in one.trials] == [t.accuracy for t in two.trials]


def test_a_worker_that_cannot_build_its_evaluator_stops_the_search_with_its_reason(helpers: Any) -> None:
    space = helpers.tiny_space()
    with pytest.raises(AutoPruneError, match="could not build its evaluator: FileNotFoundError: no such supernet"):
        run_search(make_searcher("random", space, seed=0), helpers.JitteryFactory(0.0)(), SearchConfig(trials=4),
                   progress=False, parallel=ParallelConfig(2, helpers.BrokenFactory(), threads=1))  # fmt: skip


def test_searchers_that_need_each_result_first_are_refused(helpers: Any) -> None:
    space = helpers.tiny_space()
    for name in ("greedy", "sampling"):
        with pytest.raises(AutoPruneError, match="cannot keep 2 evaluations going at once"):
            run_search(make_searcher(name, space, seed=0), helpers.JitteryFactory(0.0)(), SearchConfig(trials=2),
                       progress=False, parallel=ParallelConfig(2, helpers.JitteryFactory(0.0)))  # fmt: skip


@pytest.mark.slow  # multi-process or many epochs: kept out of the ~10 min fast suite
@pytest.mark.parametrize("ignore_sigterm", [False, True], ids=["terminated", "killed"])
def test_a_closed_pool_ends_its_busy_workers_at_once(helpers: Any, tmp_path: Path, ignore_sigterm: bool) -> None:
    factory = helpers.JitteryFactory(max_sleep_s=0.0, started=str(tmp_path), ignore_sigterm=ignore_sigterm)
    pool = EvaluatorPool(ParallelConfig(2, dataclasses.replace(factory, max_sleep_s=1000.0), threads=1))
    futures = [pool.submit(helpers.tiny_space().uniform(1.0), (2,)) for _ in range(3)]
    deadline = time.time() + 60
    while len(list(tmp_path.iterdir())) < 2 and time.time() < deadline:  # both workers are evaluating
        time.sleep(0.05)
    processes = list(pool._executor._processes.values())
    assert len(processes) == 2 and {p.pid for p in processes} == {int(f.name) for f in tmp_path.iterdir()}
    start = time.time()
    pool.close()  # what run_search does at the end, on Ctrl-C or on an error
    assert time.time() - start < (10 if ignore_sigterm else 4.5) and not any(p.is_alive() for p in processes)
    assert futures[2].cancelled() or futures[2].done()


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_killed_parallel_search_resumes_to_exactly_the_requested_episodes(supernet_file: Path,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    out, total = tmp_path / "run", 24
    cmd = [sys.executable, "-m", "autoprune", "search", "--supernet", str(supernet_file), "--searcher", "ddpg",
           "--trials", str(total), "--workers", "2", "--out", str(out), "--no-progress", "--threads", "2",
           "--device", "cpu", "--bn-batches", "2", "--no-onnx", "--top-k", "2", "--seed", "3",
           *(a for k, v in (("warmup", 3), ("net_arch", "32,32"), ("batch_size", 16)) for a in
             ("--searcher-option", f"{k}={v}"))]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    log = TrialLog(out)
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline and (
            not log.jsonl.exists() or log.jsonl.read_bytes().count(b"\n") < 4):  # fmt: skip
        time.sleep(0.02)
    assert proc.poll() is None, f"the search ended before it could be killed:\n{proc.communicate()[0].decode()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = log.read()
    assert 4 <= len(before) < total
    deadline = time.time() + 30  # the workers notice that their parent is gone and end by themselves
    while _alive(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(proc.pid), "evaluator workers outlived the killed search"

    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "parallel episodes: 2 evaluator processes, 1 torch thread(s) each" in resumed.stderr  # 2 // 2
    after = log.read()
    assert [t.number for t in after] == list(range(total))  # exactly the requested episodes, none twice
    assert [t.to_dict() for t in after[: len(before)]] == [t.to_dict() for t in before]  # nothing logged was lost
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["trials"] == total and report["search"]["resumed_trials"] == len(before)
    assert report["config"]["workers"] == 2
    assert len((out / "trials.csv").read_text().splitlines()) == total + 1


def test_workers_never_read_the_holdout_and_a_mismatched_holdout_is_refused(digits_supernet: Any,
                                                                              supernet_file: Path) -> None:
    from autoprune.pipelines.search import search_supernet

    rest, held = digits_supernet.splits.hold_out(0.3)
    assert held is not None
    factory = SupernetEvaluatorFactory(str(supernet_file), "resnet20", "digits", val_batch_size=64, bn_batches=2)
    worker = factory()  # what a worker process builds: the search's part of validation, as search_supernet cuts it
    assert factory.holdout == 0.3 and sum(len(y) for _, y in worker.val) == len(rest.val)
    with pytest.raises(AutoPruneError, match=r"parallel.factory.holdout=0.3 but holdout=0.5"):
        search_supernet(digits_supernet.supernet, digits_supernet.space, digits_supernet.splits, searcher="random",
                        trials=2, progress=False, holdout=0.5, parallel=ParallelConfig(2, factory, threads=1))
