"""benchmarks/precision_speed.py runs (quick mode) and writes both precisions' step times and their ratio."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch


def test_quick_run_writes_both_precisions(benchmark_script: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    module = benchmark_script("precision_speed")
    threads = torch.get_num_threads()
    monkeypatch.setattr(sys, "argv", ["precision_speed.py", "--models", "resnet20", "--steps", "1",
                                      "--batch-size", "4", "--threads", "1", "--out", str(tmp_path), "--name", "cpu_x"])
    try:
        module.main()
    finally:
        torch.set_num_threads(threads)
    row = json.loads((tmp_path / "cpu_x.json").read_text())["rows"][0]
    assert set(row["median_s"]) == {"fp32", "bf16"} and all(v > 0 for v in row["median_s"].values())
    assert row["speedup_bf16"] == pytest.approx(row["median_s"]["fp32"] / row["median_s"]["bf16"])
    assert "| resnet20 |" in (tmp_path / "cpu_x.md").read_text()
