"""The parallel-search benchmark's --quick mode runs end to end on digits, so the script cannot rot."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "parallel_search.py"


def _load() -> object:
    spec = importlib.util.spec_from_file_location("parallel_search_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_run_measures_one_and_two_workers_of_each_searcher(tmp_path: Path) -> None:
    result = _load().main(["--quick", "--trials", "6", "--threads", "1", "--out", str(tmp_path)])  # type: ignore[attr-defined]
    runs = result["runs"]
    assert {(r["searcher"], r["workers"]) for r in runs} == {("tpe", 1), ("tpe", 2), ("ddpg", 1), ("ddpg", 2)}
    assert all(r["trials"] == 6 and r["trials_per_min"] > 0 and r["command_s"] > 0 for r in runs)
    for name in ("tpe", "ddpg"):
        speedup = result["summary"][name]["median_speedup"]["trials_per_min"]
        assert speedup > 0 and len(result["summary"][name]["speedup_per_round"]) == 1
    written = json.loads((tmp_path / "parallel_search_quick.json").read_text())
    assert written["meta"]["command"].startswith(".venv/bin/python benchmarks/parallel_search.py --quick")
    assert "| ddpg | 2 |" in (tmp_path / "parallel_search_quick.md").read_text()
