"""Storages, cross-process study locks, heartbeats and pruners for the Optuna searchers.

Several worker processes (on one machine or many) can run :func:`~autoprune.search.run_search` over the
same Optuna study. Two things make their total exact:

- :class:`StudyLock` serializes "count the study's trials, then create one" across processes: a
  PostgreSQL advisory lock (or MySQL ``GET_LOCK``) on the database itself, or an ``flock`` on a file next
  to a SQLite database or journal file. A lock dies with its process or connection, so a killed worker
  never blocks the others.
- :func:`budget_count` counts the trials that use up the budget: every trial except those that died with
  their worker and were re-queued (a stale trial, failed by the storage heartbeat and copied to a waiting
  trial by :class:`optuna.storages.RetryHeartbeatStaleTrialCallback`; the copy counts instead).

Heartbeats and the trials of dead workers: :mod:`autoprune.search.optuna_liveness`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autoprune._registry import Registry
from autoprune.errors import AutoPruneError

#: Pruner names accepted by ``pruner=`` (and ``autoprune search --pruner``).
PRUNERS: tuple[str, ...] = ("none", "median", "sha", "hyperband")
_PRUNER_NAMES: Registry[str] = Registry("pruner")
for _name in PRUNERS:
    _PRUNER_NAMES.register(_name, _name)

_DRIVERS = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "pymysql": "pymysql"}
STORAGE_HINT = (
    "use an Optuna storage URL: sqlite:///PATH/study.db, postgresql://USER:PASSWORD@HOST:PORT/DB, "
    "mysql+pymysql://USER:PASSWORD@HOST/DB, or journal:PATH for a journal file"
)


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's experimental-feature warnings and its ask-and-tell heartbeat notice.

    The heartbeat and retry APIs are marked experimental; ask-and-tell with a heartbeat storage is what
    these searchers do on purpose (they run the heartbeat thread themselves).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


def make_pruner(name: str | None, *, n_startup_trials: int = 4) -> optuna.pruners.BasePruner:
    """The Optuna pruner called ``name``: ``none``, ``median``, ``sha`` (successive halving) or ``hyperband``.

    Steps are validation-batch counts (the fidelity rungs of the search).

    Raises:
        UnknownNameError: another name (with the closest valid one).
    """
    name = "none" if name is None else _PRUNER_NAMES.get(name)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=0)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=2)
    return optuna.pruners.NopPruner()


def default_storage(run_dir: str | Path) -> str:
    """``sqlite:///RUN_DIR/study.db`` with an absolute path (what the CLI uses unless ``--storage`` is given)."""
    return f"sqlite:///{Path(run_dir).resolve() / 'study.db'}"


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and reports)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL: nothing to hide
        return url


def open_storage(
    url: str | None, *, heartbeat_interval: int | None = 30, grace_period: int | None = None, max_retry: int | None = 3
) -> optuna.storages.BaseStorage | None:
    """The Optuna storage for ``url`` (``None``: a study in memory, for one process).

    Database storages and journal files get a heartbeat: a worker's running trial whose heartbeat stops for
    ``grace_period`` seconds (default twice the interval) is failed and re-queued, at most ``max_retry`` times.
    (Optuna's journal storage has no heartbeat of its own; see :class:`HeartbeatJournalStorage`.)

    Raises:
        AutoPruneError: a malformed URL, a missing database driver, or a database that cannot be reached.
    """
    if url is None:
        return None
    if not isinstance(url, str) or not url:
        raise AutoPruneError(f"storage={url!r} is not a storage URL; {STORAGE_HINT}")
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:").removeprefix("//"))
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path))
        if not heartbeat_interval:
            return optuna.storages.JournalStorage(backend)
        return HeartbeatJournalStorage(backend, heartbeat_interval, grace_period, max_retry)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 120}  # writers from other workers: wait, do not fail
        database = _database(url)
        if database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    hb = heartbeat_interval if heartbeat_interval else None
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if hb else None
    try:
        with quiet_optuna():
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=hb, grace_period=grace_period if hb else None,
                heartbeat_stale_trial_callback=retry,
            )  # fmt: skip
    except ModuleNotFoundError as exc:
        raise AutoPruneError(
            f"storage {redact(url)} needs the database driver {exc.name!r}: pip install "
            f"{_DRIVERS.get(str(exc.name), exc.name)}"
        ) from None
    except Exception as exc:  # sqlalchemy's ArgumentError / OperationalError and Optuna's ValueError
        message = f"cannot open storage {redact(url)}: {type(exc).__name__}: {exc}"
        raise AutoPruneError(f"{message}; {STORAGE_HINT}") from None


def _database(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception:  # reported by open_storage
        return None
    return None if database in (None, "", ":memory:") else database


#: User attribute holding a running trial's last heartbeat (Unix time) in a journal storage.
def budget_count(trials: Sequence[FrozenTrial]) -> tuple[int, int]:
    """``(trials that count toward the budget, of which waiting)``.

    A trial re-queued after its worker died (it appears in a later trial's ``retry_history``) does not
    count: its waiting copy does.
    """
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    counted = [t for t in trials if t.number not in retried]
    return len(counted), sum(t.state == TrialState.WAITING for t in counted)


class StudyLock:
    """A lock shared by every process working on one study (see the module docstring).

    Args:
        url: The storage URL (``None``: an in-memory study, a lock within this process only).
        study_name: The study; different studies in one database do not block each other.

    Attributes:
        covers_all_workers: Whether every process that can reach the study takes this same lock (False only for
            the local lock file of an unknown backend).
    """

    def __init__(self, url: str | None, study_name: str) -> None:
        self.url = url
        self.key = int.from_bytes(hashlib.sha256(f"autoprune:{study_name}".encode()).digest()[:8], "big", signed=True)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._conn: Any = None
        self._engine: Any = None
        self.kind, self._path, self.covers_all_workers = self._choose(url, study_name)

    @staticmethod
    def _choose(url: str | None, study_name: str) -> tuple[str, Path | None, bool]:
        # (kind, lock file, whether every process that can reach the study takes this same lock)
        if url is None:
            return "thread", None, True
        if url.startswith("journal:"):
            return "file", Path(url.removeprefix("journal:").removeprefix("//") + ".autoprune.lock"), True
        if url.startswith(("postgresql", "postgres:")):
            return "postgresql", None, True
        if url.startswith("mysql"):
            return "mysql", None, True
        database = _database(url) if url.startswith("sqlite") else None
        if database:
            return "file", Path(database + ".autoprune.lock"), True
        if url.startswith("sqlite"):
            return "thread", None, True  # an in-memory SQLite database lives in this process only
        # Another backend: lock a local file (exact on one machine; workers on several machines may overshoot).
        digest = hashlib.sha256(f"{url}|{study_name}".encode()).hexdigest()[:16]
        return "file", Path(os.environ.get("TMPDIR", "/tmp")) / f"autoprune-study-{digest}.lock", False

    def __enter__(self) -> StudyLock:
        self._thread_lock.acquire()
        self._depth += 1
        if self._depth == 1:
            try:
                self._acquire()
            except BaseException:
                self._depth -= 1
                self._thread_lock.release()
                raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._depth == 1:
                self._release()
        finally:
            self._depth -= 1
            self._thread_lock.release()

    def _acquire(self) -> None:
        if self.kind == "file":
            import fcntl

            assert self._path is not None
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        elif self.kind in ("postgresql", "mysql"):
            from sqlalchemy import text

            sql = "SELECT pg_advisory_lock(:key)" if self.kind == "postgresql" else "SELECT GET_LOCK(:key, -1)"
            self._connection().execute(text(sql), {"key": self.key if self.kind == "postgresql" else str(self.key)})

    def _release(self) -> None:
        if self.kind == "file" and self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        elif self.kind in ("postgresql", "mysql") and self._conn is not None:
            from sqlalchemy import text

            sql = "SELECT pg_advisory_unlock(:key)" if self.kind == "postgresql" else "SELECT RELEASE_LOCK(:key)"
            self._conn.execute(text(sql), {"key": self.key if self.kind == "postgresql" else str(self.key)})

    def _connection(self) -> Any:
        # One dedicated connection, in autocommit: advisory locks belong to a session, not a transaction.
        if self._conn is None:
            import sqlalchemy
            from sqlalchemy.pool import NullPool

            assert self.url is not None
            self._engine = sqlalchemy.create_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            self._conn = self._engine.connect()
        return self._conn

    def close(self) -> None:
        """Close the lock's database connection (a held lock is released with it)."""
        if self._conn is not None:
            self._conn.close()
            self._engine.dispose()
            self._conn = self._engine = None


HEARTBEAT_ATTR = "autoprune_heartbeat"


class HeartbeatJournalStorage(optuna.storages.JournalStorage):
    """Optuna's journal storage with a heartbeat kept by autoprune.

    Optuna's journal storage has none, so a worker killed on another machine would leave its trial running
    for ever. Here :class:`Heartbeat` writes the time into the running trial's user attribute
    :data:`HEARTBEAT_ATTR` every ``heartbeat_interval`` seconds, and :func:`fail_stale` fails and re-queues
    a running trial whose last beat is older than ``grace_period`` seconds (default twice the interval).
    Beats are compared with this machine's clock: keep the workers' clocks in sync (NTP) to well under the
    grace period.
    """

    def __init__(
        self, backend: Any, heartbeat_interval: int, grace_period: int | None = None, max_retry: int | None = 3
    ) -> None:
        super().__init__(backend)
        self.heartbeat_interval = int(heartbeat_interval)
        self.grace_period = float(2 * heartbeat_interval if grace_period is None else grace_period)
        self.max_retry = max_retry
