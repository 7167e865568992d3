"""Reading a run folder back: ``report.json``, ``trials.csv``, ``plan.json``, ``sensitivity.csv``.

Every command writes some of these; :func:`load_run` reads whatever is there, so reports and plots work
on search, sample, sensitivity, prune and extract folders alike.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoprune.analysis.sensitivity import SensitivityTable
from autoprune.errors import AutoPruneError


@dataclass(frozen=True)
class TrialPoint:
    """One row of ``trials.csv`` as the plots need it (``accuracy``/``macs`` are None for failed trials).

    ``accuracy`` is the validation score the searcher saw (at the trial's fidelity), never test accuracy.
    """

    number: int
    state: str
    feasible: bool
    accuracy: float | None
    macs: int | None
    macs_ratio: float | None
    params: int | None = None


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


def _number(text: str | None, kind: type[int] | type[float]) -> Any:
    if text is None or text.strip() == "":
        return None
    return kind(float(text)) if kind is int else float(text)


def read_trials_csv(path: str | Path) -> list[TrialPoint]:
    """Read ``trials.csv`` (the format of :mod:`autoprune.search.runner`).

    Raises:
        AutoPruneError: missing columns or non-numeric values.
    """
    path = Path(path)
    points = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"number", "state", "feasible", "accuracy", "macs", "macs_ratio"} - set(reader.fieldnames or ())
        if missing:
            raise AutoPruneError(f"{path} lacks the columns {sorted(missing)}; it is not an autoprune trials.csv")
        for i, row in enumerate(reader):
            try:
                points.append(TrialPoint(
                    number=int(row["number"]), state=row["state"], feasible=row["feasible"] not in ("0", "False", ""),
                    accuracy=_number(row["accuracy"], float), macs=_number(row["macs"], int),
                    macs_ratio=_number(row["macs_ratio"], float), params=_number(row.get("params"), int),
                ))  # fmt: skip
            except ValueError as exc:
                raise AutoPruneError(f"{path}: row {i + 2} is malformed ({exc})") from None
    return points


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
        AutoPruneError: the folder does not exist, holds none of report.json / trials.csv / sensitivity.csv,
            or a file is corrupt.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        hint = f" (its folder is {str(folder.parent)!r})" if folder.name == "report.json" else ""
        raise AutoPruneError(f"run folder {str(folder)!r} {what}; pass the --out folder of an autoprune run{hint}")
    report_path, trials_path, sens_path = folder / "report.json", folder / "trials.csv", folder / "sensitivity.csv"
    if not (report_path.is_file() or trials_path.is_file() or sens_path.is_file()):
        raise AutoPruneError(
            f"{folder} holds no report.json, trials.csv or sensitivity.csv: it is not an autoprune run folder; "
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
    trials = read_trials_csv(trials_path) if trials_path.is_file() else None
    sensitivity = SensitivityTable.load_csv(sens_path) if sens_path.is_file() else None
    return RunData(folder, report, trials, _keep_ratios(folder, report), sensitivity)
