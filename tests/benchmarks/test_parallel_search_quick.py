"""The parallel-search benchmark's --quick mode runs end to end on digits, so the script cannot rot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.mark.slow
def test_quick_run_measures_one_and_two_workers_of_each_searcher(benchmark_script: Any, tmp_path: Path) -> None:
    script = benchmark_script("parallel_search")
    result = script.main(["--quick", "--trials", "6", "--threads", "1", "--out", str(tmp_path)])
    runs = result["runs"]
    assert {(r["searcher"], r["workers"]) for r in runs} == {("tpe", 1), ("tpe", 2), ("ddpg", 1), ("ddpg", 2)}
    assert all(r["trials"] == 6 and r["trials_per_min"] > 0 and r["command_s"] > 0 for r in runs)
    for name in ("tpe", "ddpg"):
        speedup = result["summary"][name]["median_speedup"]["trials_per_min"]
        assert speedup > 0 and len(result["summary"][name]["speedup_per_round"]) == 1
    written = json.loads((tmp_path / "parallel_search_quick.json").read_text())
    assert written["meta"]["command"].startswith(".venv/bin/python benchmarks/parallel_search.py --quick")
    assert "| ddpg | 2 |" in (tmp_path / "parallel_search_quick.md").read_text()
