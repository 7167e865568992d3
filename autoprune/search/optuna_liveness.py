"""Liveness of the workers on one Optuna study: heartbeats, and failing the trials of dead workers.

A trial whose worker died must neither be lost nor counted twice. Database storages send Optuna's own
heartbeat; :class:`~autoprune.search.optuna_storage.HeartbeatJournalStorage` adds one to journal
files. :func:`fail_stale` fails the trials whose heartbeat went stale (so that Optuna re-queues them),
:func:`fail_dead_local` those whose process on this machine is gone, and :func:`orphaned` says which
running trial has no living owner.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autoprune.search.optuna_storage import HEARTBEAT_ATTR, HeartbeatJournalStorage, quiet_optuna


def heartbeat_interval(storage: optuna.storages.BaseStorage | None) -> int | None:
    """Seconds between heartbeats of running trials in ``storage``; None when it keeps none."""
    if isinstance(storage, optuna.storages.RDBStorage):
        return storage.get_heartbeat_interval()
    if isinstance(storage, HeartbeatJournalStorage):
        return storage.heartbeat_interval
    return None


class Heartbeat:
    """Records a running trial's heartbeat every ``interval`` seconds in a daemon thread until :meth:`stop`.

    Optuna runs this thread inside ``Study.optimize``; ask-and-tell searchers run it themselves.
    """

    def __init__(self, storage: optuna.storages.BaseStorage | None, trial_id: int) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        interval = heartbeat_interval(storage)
        if not interval or storage is None:
            return
        if isinstance(storage, optuna.storages.RDBStorage):
            record = storage.record_heartbeat
        else:  # HeartbeatJournalStorage

            def record(trial_id: int) -> None:
                storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time())

        with contextlib.suppress(Exception):  # the first beat now, so the trial can go stale from the start
            record(trial_id)

        def beat() -> None:
            while not self._stop.wait(interval):
                with contextlib.suppress(Exception):  # a transient storage error: try again next beat
                    record(trial_id)

        self._thread = threading.Thread(target=beat, name=f"autoprune-heartbeat-{trial_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def fail_stale(study: optuna.Study, storage: optuna.storages.BaseStorage | None) -> None:
    """Fail the running trials of dead workers (stale heartbeat) in ``study`` (held in ``storage``); re-queue them.

    Database storages: Optuna's own ``fail_stale_trials``. :class:`HeartbeatJournalStorage`: running trials
    whose :data:`HEARTBEAT_ATTR` is older than the grace period.
    """
    with quiet_optuna():
        if not isinstance(storage, HeartbeatJournalStorage):
            optuna.storages.fail_stale_trials(study)
            return
        now = time.time()
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=storage.max_retry)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            beat = t.user_attrs.get(HEARTBEAT_ATTR)
            if isinstance(beat, (int, float)) and now - beat > storage.grace_period:
                retry(study, study.tell(t.number, state=TrialState.FAIL))


#: User attribute naming the process that runs a trial (host and pid), so that a rerun on the same machine can
#: fail the trials of a dead process at once instead of waiting for their heartbeat to go stale.
WORKER_ATTR = "worker"


def worker_tag() -> dict[str, Any]:
    """This process, as recorded on the trials it runs."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def orphaned(trial: FrozenTrial, *, untagged: bool = False) -> bool:
    """Whether a running ``trial`` belongs to no live process, as far as this machine can tell.

    A trial tagged with a process of this machine that no longer exists is orphaned. An untagged running trial
    is orphaned only when ``untagged`` is True: searchers ask and tag a trial in one hold of the study lock, so
    a caller holding a lock that every worker takes (:attr:`StudyLock.covers_all_workers`) sees an untagged
    running trial only when its process died between the two. Trials of this process and of other machines are
    left to the heartbeat.
    """
    tag = trial.user_attrs.get(WORKER_ATTR)
    if not isinstance(tag, dict):
        return untagged
    me = worker_tag()
    if tag.get("host") != me["host"]:
        return False
    pid = int(tag.get("pid", -1))
    return pid != me["pid"] and not _alive(pid)


def fail_dead_local(study: optuna.Study, *, untagged: bool = False) -> int:
    """Fail and re-queue the :func:`orphaned` running trials (a dead process's), at once; returns how many.

    Call it holding the study lock; ``untagged``: see :func:`orphaned`.
    """
    n = 0
    with quiet_optuna():
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not orphaned(t, untagged=untagged):
                continue
            frozen = study.tell(t.number, state=TrialState.FAIL)
            optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen)
            n += 1
    return n
