"""The efficiency benchmark's --quick mode runs end to end on digits (about 1.5 minutes on 2 busy cores), so
the script cannot rot; timings are not asserted on, only what must hold by construction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml


@pytest.mark.slow
def test_quick_efficiency_rows_come_from_one_interleaved_run(benchmark_script: Any, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        result = benchmark_script("latency_efficiency").main(
            ["--quick", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--threads", "1",
             "--profile", "--profile-top", "5", "--equal-macs", "0.4"])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    rows = {r["row"]: r for r in result["rows"]}
    assert list(rows) == ["dense", "macs", "latency", "latency-measured", "macs-equal"]
    assert rows["dense"]["latency_ratio"] == 1.0 and rows["dense"]["macs_ratio"] == 1.0
    assert rows["macs"]["macs_ratio"] <= 0.5 + 1e-3  # the MACs budget, counted on the exported model
    assert rows["macs-equal"]["macs_ratio"] <= 0.4 + 1e-3 and rows["macs-equal"]["budget"] == "MACs 0.4"
    for row in rows.values():
        assert row["efficiency"] == pytest.approx(row["macs_ratio"] / row["latency_ratio"])
        assert row["latency_ratio_q1"] <= row["latency_ratio"] <= row["latency_ratio_q3"]
        assert row["latency_ratio_iqr"] >= 0 and 0 <= row["val_accuracy"] <= 1
    for key in ("latency", "latency-measured"):
        assert rows[key]["budget"] == "latency 0.8" and rows[key]["predicted_latency_ratio"] <= 0.8 + 1e-6
    timing = result["latency"]
    assert (timing["batch_size"], timing["threads"], timing["rounds"], timing["form"]) == (128, 1, 5, "deploy")
    # (c) searched the space `groups --latency-steps` wrote: each group's counts are multiples of its round_to
    work = tmp_path / "work"
    written = yaml.safe_load((work / "measured_space.yaml").read_text())
    searched = json.loads((work / "search-latency-measured" / "report.json").read_text())["space"]["groups"]
    assert {n: g["round_to"] for n, g in written["groups"].items()} == {n: g["round_to"] for n, g in searched.items()}
    for g in searched.values():
        assert all(c % g["round_to"] == 0 or c == g["channels"] for c in g["counts"])
    assert "round_to" not in next(iter(json.loads((work / "search-latency" / "report.json").read_text())["space"]
                                       ["groups"].values()))  # (b): the space's global rounding
    for key in ("dense", "latency-measured"):
        ops = result["profile"][key]["ops"]
        assert len(ops) == 5 and sum(op["share"] for op in ops) <= 1 + 1e-9
        assert any("conv" in op["op"] for op in ops)
    page = (tmp_path / "out" / "latency_efficiency_quick.md").read_text()
    assert page.count("\n| ") >= 5 + 2 * 5 and "Where the time goes: dense" in page
    assert "Latency winners vs the MACs-budget winner at 0.4 of the MACs" in page
    assert json.loads((tmp_path / "out" / "latency_efficiency_quick.json").read_text())["rows"] == result["rows"]
