"""Reading a run folder back: ``report.json``, the trial log, ``plan.json``, ``sensitivity.csv``.

Every command writes some of these; :func:`load_run` reads whatever is there, so reports and plots work
on search, sample, sensitivity, prune and extract folders alike. Trials are read through the runner's own
:class:`~autoprune.search.TrialLog` (``trials.jsonl``; ``trials.csv`` beside it is the same record for people).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoprune.analysis.sensitivity import SensitivityTable
from autoprune.errors import AutoPruneError
from autoprune.search.base import Trial
from autoprune.search.trial_log import TrialLog


@dataclass(frozen=True)
class TrialPoint:
    """One trial as the plots need it (``accuracy``/``macs`` are None for failed trials).

    ``accuracy`` is the validation score the searcher saw (at the trial's fidelity), never test accuracy.
    """

    number: int
    state: str
    feasible: bool
    accuracy: float | None
    macs: int | None
    macs_ratio: float | None
    params: int | None = None

    @classmethod
    def of(cls, trial: Trial) -> TrialPoint:
        return cls(trial.number, trial.state, trial.feasible, trial.accuracy, trial.macs, trial.macs_ratio,
                   trial.params)  # fmt: skip


@dataclass
class RunData:
    """What a run folder holds (None where a file is absent)."""

    folder: Path
    report: dict[str, Any] | None
    trials: list[TrialPoint] | None
    keep_ratios: dict[str, float] | None
    sensitivity: SensitivityTable | None


def report_get(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...`` or None where any level is missing or not a mapping (older reports lack fields)."""
    value = data
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def read_trials(folder: str | Path) -> list[TrialPoint]:
    """The trials of a run folder, read by :meth:`TrialLog.read <autoprune.search.TrialLog.read>`.

    Raises:
        AutoPruneError: the folder has no trial log, or a line of it is not a trial.
    """
    log = TrialLog(Path(folder))
    if not log.jsonl.is_file():
        raise AutoPruneError(f"{log.folder} has no {log.jsonl.name}; pass the --out folder of a search or sample run")
    return [TrialPoint.of(t) for t in log.read()]


def read_trials_csv(path: str | Path) -> list[TrialPoint]:
    """The trials of the run folder holding ``path`` (its ``trials.csv``): :func:`read_trials` of that folder.

    Raises:
        AutoPruneError: see :func:`read_trials`.
    """
    path = Path(path)
    return read_trials(path if path.is_dir() else path.parent)


def _keep_ratios(folder: Path, report: dict[str, Any] | None) -> dict[str, float] | None:
    if report is not None and isinstance(report.get("keep_ratios"), dict):
        return {str(k): float(v) for k, v in report["keep_ratios"].items()}
    plan = folder / "plan.json"
    if plan.is_file():
        try:
            data = json.loads(plan.read_text())
            return {name: len(idx) / data["channels"][name] for name, idx in data["kept"].items()}
        except (json.JSONDecodeError, KeyError, TypeError, ZeroDivisionError) as exc:
            raise AutoPruneError(f"{plan} is not an autoprune plan ({exc})") from None
    return None


def load_run(folder: str | Path) -> RunData:
    """Read a run folder.

    Raises:
        AutoPruneError: the folder does not exist, holds none of report.json / trials.jsonl / sensitivity.csv,
            or a file is corrupt.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        hint = f" (its folder is {str(folder.parent)!r})" if folder.name == "report.json" else ""
        raise AutoPruneError(f"run folder {str(folder)!r} {what}; pass the --out folder of an autoprune run{hint}")
    report_path, sens_path, log = folder / "report.json", folder / "sensitivity.csv", TrialLog(folder)
    if not (report_path.is_file() or log.jsonl.is_file() or sens_path.is_file()):
        raise AutoPruneError(
            f"{folder} holds no report.json, {log.jsonl.name} or sensitivity.csv: it is not an autoprune run folder; "
            "pass the --out folder of `autoprune search`, `sample`, `sensitivity`, `prune` or `extract`"
        )
    report = None
    if report_path.is_file():
        try:
            report = json.loads(report_path.read_text())
        except json.JSONDecodeError as exc:
            raise AutoPruneError(f"{report_path} is not valid JSON ({exc}); rerun the command that wrote it") from None
        if not isinstance(report, dict):
            raise AutoPruneError(f"{report_path} must hold a JSON object, got {type(report).__name__}")
    trials = read_trials(folder) if log.jsonl.is_file() else None
    sensitivity = SensitivityTable.load_csv(sens_path) if sens_path.is_file() else None
    return RunData(folder, report, trials, _keep_ratios(folder, report), sensitivity)
