"""Run folders that record what made them, so that no command mixes its files into another run's.

Every command claims its ``--out`` folder before any work: it writes ``.autoprune-run.json`` (the command
and the settings that define the run). That write is also the check that the folder is writable, so a
read-only or unwritable ``--out`` fails in one line before anything is trained.

* a new or empty folder is claimed (also one holding only the marker of a command that failed before
  writing anything);
* a folder holding another run is refused, naming it; ``--overwrite`` replaces a run folder whole (a
  non-empty folder that is not a run folder, such as the current folder, is never deleted);
* a resumable run (``search --resume``, ``supernet`` rerun on its folder) continues only when the
  settings that define it are the same, and the error names every difference.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from autoprune.errors import RunFolderError

MARKER = ".autoprune-run.json"
#: ``new``: the folder must hold no run; ``resume``: it must hold this command's run (``--resume``);
#: ``continue``: either (a rerun continues an unfinished run with the same settings); ``worker``: a
#: search worker process joining its parent's folder (no checks, no marker).
Mode = Literal["new", "resume", "continue", "worker"]
#: Settings that say how and where a run computes, not what: a resumed run may change them.
HOW_NOT_WHAT = ("device", "out", "overwrite", "threads", "progress")


def claim_run_folder(
    out: Path | None,
    command: str,
    settings: Mapping[str, Any],
    *,
    mode: Mode = "new",
    overwrite: bool = False,
    defining: tuple[str, ...] | None = None,
) -> Path:
    """Create or check ``out`` (default ``runs/<command>-<time>``) for a run of ``command``; return it.

    Args:
        out: The ``--out`` folder, or None for a fresh timestamped one under ``runs/``.
        command: The command claiming it.
        settings: The run's settings (JSON-able; paths as text), recorded in the marker.
        mode: See :data:`Mode`.
        overwrite: Replace an existing run folder whole (``--overwrite``).
        defining: The settings a resumed run must share with the recorded ones (default: all of them).

    Raises:
        RunFolderError: the folder holds another run, differs from the run being resumed, has nothing to
            resume, is not a run folder, or cannot be written (with the file-system reason).
    """
    if out is None:
        out = _fresh(Path("runs") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}")
    shown = str(out) or "''"
    try:
        return _claim(out, shown, command, settings, mode, overwrite, defining)
    except OSError as exc:  # over-long name, a file where a folder should be, no permission, full disk, ...
        raise RunFolderError(f"--out {shown}: cannot write the run folder ({exc.strerror or exc}); pass a "
                             "writable folder") from None


def _claim(out: Path, shown: str, command: str, settings: Mapping[str, Any], mode: Mode, overwrite: bool,
           defining: tuple[str, ...] | None) -> Path:  # fmt: skip
    if out.resolve() == Path.cwd().resolve():
        raise RunFolderError(f"--out {shown} is the current folder: pass a folder for the run's files, "
                             f"e.g. --out runs/{command}-1")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {shown} is a file, not a folder; pass a new or existing folder")
    settings = _plain(settings)
    if mode == "worker":
        return out
    recorded = read_marker(out)
    # A folder holding only a marker lost nothing when its command failed before writing a result.
    holds_files = out.is_dir() and any(child.name != MARKER for child in out.iterdir())
    if recorded is not None and not holds_files and mode != "resume":
        recorded = None
    if overwrite and holds_files:
        if recorded is None:
            raise RunFolderError(f"--overwrite refused: {shown} holds files but is not an autoprune run folder, so "
                                 "nothing there is deleted; pass a new or empty --out")
        _empty(out)
        recorded, holds_files = None, False
    if mode == "resume" and recorded is None:
        raise RunFolderError(f"--resume: nothing to resume in {shown} (no {command} run there); drop --resume to "
                             "start a new run there")
    if recorded is not None:
        if recorded["command"] != command or mode == "new":
            resume_hint = " or --resume to continue it" if recorded["command"] == command == "search" else ""
            raise RunFolderError(f"--out {shown} already holds a {recorded['command']} run: pass a new --out, "
                                 f"--overwrite to replace that run whole{resume_hint}")
        if holds_files:
            _check_same(shown, command, recorded.get("settings"), settings, defining)
    elif holds_files:
        raise RunFolderError(f"--out {shown} holds files but is not an autoprune run folder: pass a new or empty "
                             "folder (nothing there is changed)")
    out.mkdir(parents=True, exist_ok=True)
    if recorded is None or recorded.get("settings") is None or not holds_files:
        _write_json(out / MARKER, {"command": command, "settings": settings, "created": time.time()})
    else:
        _probe_writable(out)
    return out


def adopt_recorded(out: Path, settings: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """Fill the ``keys`` left unset (None) in ``settings`` with the values recorded for the run in ``out``.

    Only when no budget option was given are the recorded budget options adopted (all of them), so that a
    resume never mixes a given budget with a recorded one. Returns the options adopted, as flags.
    """
    recorded = (read_marker(out) or {}).get("settings") if out.is_dir() else None
    if not isinstance(recorded, dict):
        return []
    budgets = ("target_macs", "target_params", "target_latency")
    budget_given = any(settings.get(k) is not None for k in budgets)
    adopted = []
    for key in keys:
        if settings.get(key) is None and recorded.get(key) is not None and not (key in budgets and budget_given):
            settings[key] = recorded[key]
            adopted.append(_option(key))
    return adopted


def read_marker(out: Path) -> dict[str, Any] | None:
    """What made the run in ``out``: the marker, or for folders from before markers, what their files say."""
    marker = out / MARKER
    if marker.is_file():
        try:
            data = json.loads(marker.read_text())
            if isinstance(data, dict) and isinstance(data.get("command"), str):
                return data
        except (OSError, ValueError):
            pass
        return {"command": "unknown", "settings": None}
    if (out / "trials.jsonl").is_file():
        return {"command": "search", "settings": None}
    report = out / "report.json"
    if report.is_file():
        try:
            command = json.loads(report.read_text()).get("command")
        except (OSError, ValueError, AttributeError):
            command = None
        return {"command": command if isinstance(command, str) else "unknown", "settings": None}
    if (out / "supernet.pt").is_file():
        return {"command": "supernet", "settings": None}
    return None


def _check_same(shown: str, command: str, recorded: Any, settings: dict[str, Any],
                defining: tuple[str, ...] | None) -> None:  # fmt: skip
    if not isinstance(recorded, dict):
        return  # a folder from before markers: nothing recorded to compare with
    keys = defining if defining is not None else tuple(sorted(set(recorded) | set(settings)))
    diffs = [f"{_option(k)} {_show(settings.get(k))} (the run has {_show(recorded.get(k))})"
             for k in keys if settings.get(k) != recorded.get(k)]
    if diffs:
        raise RunFolderError(f"{shown} holds a {command} run with other settings: {'; '.join(diffs)}. Continue it "
                             "with its own settings, or pass a new --out")


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _show(value: Any) -> str:
    return "unset" if value is None else json.dumps(value) if not isinstance(value, str) else value


def _plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """JSON values only (paths and other objects as text), as they will read back from the marker."""
    return json.loads(json.dumps(dict(settings), default=str))


def _fresh(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _empty(out: Path) -> None:
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _probe_writable(out: Path) -> None:
    probe = out / f".write-probe.{os.getpid()}"
    probe.write_text("")
    probe.unlink()
