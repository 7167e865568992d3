"""Resumable benchmark stages: each stage is one ``autoprune`` command with its own run folder under a work
folder; a finished stage (``report.json`` present) is read instead of rerun, a started one resumes."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_stage(work: Path, name: str, argv: list[str], *, progress: bool = True) -> dict[str, Any]:
    """Run ``autoprune ARGV --out WORK/NAME`` unless that folder already holds a finished report.

    A started stage continues: ``train``, ``supernet`` and ``sample`` resume when rerun on their folder,
    ``search`` with ``--resume``; other commands (``prune``) start over (``--overwrite``). ``progress=False``: a command
    without progress bars (``groups``), so no ``--no-progress`` is passed.
    """
    out = work / name
    report = out / "report.json"
    if report.exists():
        return json.loads(report.read_text())
    again: list[str] = []
    if (out / ".autoprune-run.json").exists() and argv[0] == "search":
        again = ["--resume"]
    elif out.exists() and not ((out / ".autoprune-run.json").exists() and argv[0] in ("train", "supernet", "sample")):
        again = ["--overwrite"]
    quiet = ["--no-progress"] if progress else []
    cmd = [sys.executable, "-m", "autoprune", *argv, "--out", str(out), *quiet, *again]
    log = work / f"{name}.log"
    start = time.time()
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(cmd[2:])}", flush=True)
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc != 0 or not report.exists():
        raise SystemExit(f"stage {name} failed (exit {rc}); see {log}")
    print(f"    done in {time.time() - start:.0f} s", flush=True)
    return json.loads(report.read_text())


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (NaN with fewer than two values)."""
    if len(values) < 2:
        return (values[0] if values else math.nan), math.nan
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
