"""The trial log of a run folder: ``trials.jsonl`` (the record, read back on resume and by reports) and
``trials.csv`` (the same trials for people and spreadsheets), appended as trials finish.

Analysis reads trials only through :class:`TrialLog`, so the runner, resume and reports share one format.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any

from autoprune.errors import AutoPruneError
from autoprune.search.base import Trial

CSV_FIELDS = (
    "number", "state", "feasible", "accuracy", "loss", "macs", "macs_ratio", "params", "latency_ms",
    "fidelity", "seconds", "cached", "counts", "info", "error",
)  # fmt: skip


class TrialLog:
    """Append-only ``trials.jsonl`` + ``trials.csv`` in a run folder (each line flushed and fsynced)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.jsonl = self.folder / "trials.jsonl"
        self.csv = self.folder / "trials.csv"

    def read(self) -> list[Trial]:
        """Trials of earlier runs.

        A torn last line (a process killed mid-write: no final newline) is skipped: the trial it was recording
        did not finish. Any other bad line is an error naming it. See :meth:`repair`.
        """
        if not self.jsonl.exists():
            return []
        text = self.jsonl.read_text()
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            lines.pop()
        trials = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                trials.append(Trial.from_dict(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise AutoPruneError(
                    f"{self.jsonl}: line {i + 1} is not a trial ({exc}); remove that line or start a new --out"
                ) from None
        return trials

    def repair(self) -> None:
        """Cut a torn last line off both files, so that appends start on a clean line, and give ``trials.csv``
        the trials of ``trials.jsonl`` it lacks (a process killed between writing the one and the other).

        Only while no other process appends (before workers start): a line being written looks torn.
        """
        for path in (self.jsonl, self.csv):
            if not path.exists():
                continue
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                with path.open("r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
        trials = self.read()
        text = self.csv.read_text() if self.csv.exists() else ""
        rows = max(0, len(list(csv.reader(io.StringIO(text)))) - 1)  # a field may hold a newline: count rows
        if rows < len(trials):
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
            if not text:
                writer.writeheader()
            writer.writerows(csv_row(t) for t in trials[rows:])
            _append_line(self.csv, buf.getvalue())

    def reset(self) -> None:
        for path in (self.jsonl, self.csv):
            path.unlink(missing_ok=True)

    def append(self, trial: Trial, *, renumber: bool = False) -> Trial:
        """Write ``trial`` to both files, holding a lock on ``trials.jsonl`` (worker processes may share them).

        With ``renumber``, the trial gets the next number of the log (its line count), so that trials of
        several workers appending to one log are numbered 0, 1, 2, ... without gaps or repeats.
        Returns the trial as written.
        """
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.jsonl, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if renumber:
                trial = dataclasses.replace(trial, number=self.jsonl.read_bytes().count(b"\n"))
            _write_all(fd, trial.to_json() + "\n")
            new = not self.csv.exists() or self.csv.stat().st_size == 0
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(csv_row(trial))
            _append_line(self.csv, buf.getvalue())
        finally:
            os.close(fd)  # releases the lock
        return trial


def csv_row(trial: Trial) -> dict[str, Any]:
    """One ``trials.csv`` row (counts and info as JSON text)."""
    r = trial.result
    return {
        "number": trial.number,
        "state": trial.state,
        "feasible": int(trial.feasible),
        "accuracy": "" if r is None else f"{r.accuracy:.6f}",
        "loss": "" if r is None else f"{r.loss:.6f}",
        "macs": "" if r is None else r.macs,
        "macs_ratio": "" if r is None else f"{r.macs_ratio:.6f}",
        "params": "" if r is None else r.params,
        "latency_ms": "" if r is None or r.latency_ms is None else f"{r.latency_ms:.4f}",
        "fidelity": "" if r is None else r.fidelity,
        "seconds": f"{trial.seconds:.4f}",
        "cached": "" if r is None else int(r.cached),
        "counts": json.dumps(trial.counts, sort_keys=True),
        "info": json.dumps(trial.info, sort_keys=True),
        "error": trial.error or "",
    }


def _append_line(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _write_all(fd, text)
    finally:
        os.close(fd)


def _write_all(fd: int, text: str) -> None:
    # One write per line with O_APPEND, then fsync: a finished trial survives a crash of the machine.
    data = text.encode()
    written = os.write(fd, data)
    if written != len(data):
        raise OSError(f"short write ({written} of {len(data)} bytes): is the disk full?")
    os.fsync(fd)
