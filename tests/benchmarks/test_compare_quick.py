"""The side-by-side benchmark's --quick mode runs end to end on digits, so the script cannot rot."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare.py"


def _load() -> object:
    spec = importlib.util.spec_from_file_location("compare_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_comparison_has_every_method_within_budget(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        result = _load().main(["--quick", "--out", str(tmp_path), "--threads", "1",  # type: ignore[attr-defined]
                               "--searchers", "tpe", "greedy", "ddpg"])
    finally:
        torch.set_num_threads(threads)
    rows = {r["method"]: r for r in result["rows"]}
    expected = {"dense", "uniform-l1+ft", "global-l1+ft", "sampling+ft", "tpe", "greedy", "ddpg"}
    assert expected <= set(rows)
    assert any(name.endswith("+ft") and name.split("+")[0] in {"tpe", "greedy", "ddpg"} for name in rows)
    for name, row in rows.items():
        if name == "dense":
            continue
        assert row["macs_ratio"] <= 0.5 + 1e-3, name  # every method meets the budget, counted on its model
        assert 0.0 <= row["accuracy"] <= 1.0 and row["latency_b1_ratio"] > 0
        if name in {"tpe", "greedy", "ddpg"}:
            assert row["epochs"] == 0  # exported without finetuning
    saved = json.loads((tmp_path / "compare_quick.json").read_text())
    assert saved["rows"] == result["rows"]
    assert (tmp_path / "compare_quick.md").read_text().count("\n|") >= len(expected)
