"""The side-by-side benchmark's --quick mode runs end to end on digits, so the script cannot rot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch


@pytest.mark.slow
def test_quick_comparison_has_every_method_within_budget(benchmark_script: Any, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        result = benchmark_script("compare").main(["--quick", "--out", str(tmp_path), "--threads", "1",
                                                   "--searchers", "tpe", "greedy", "ddpg"])
    finally:
        torch.set_num_threads(threads)
    keys = [r["key"] for r in result["rows"]]
    assert len(keys) == len(set(keys)), keys  # one row per method and budget (the uniform row is added once)
    rows = {r["method"]: r for r in result["rows"]}
    expected = {"dense", "uniform-l1+ft", "global-l1+ft", "sampling+ft", "supernet-uniform", "tpe", "greedy", "ddpg"}
    assert expected <= set(rows)
    assert "tpe+ft" in rows  # the default (first) searcher's returned winner, finetuned: no pick across searchers
    for name in ("tpe", "greedy", "ddpg"):  # each searcher's winner as it returns it, with its validation evidence
        row = rows[name]
        assert row["winner_source"] in ("search", "uniform") and row["val_accuracy_se"] > 0
        assert row["budget_use_evaluated"]["saturated_fraction"] >= 0.95 or name == "greedy"
        assert 0.0 < row["accuracy_se"] < 0.05
    for name, row in rows.items():
        if name == "dense":
            continue
        if name.endswith("-latency-budget"):  # its budget is predicted latency; MACs may land either side
            assert 0.0 < row["latency_target"] <= 1.0
        else:
            assert row["macs_ratio"] <= 0.5 + 1e-3, name  # every method meets the budget, counted on its model
        assert 0.0 <= row["accuracy"] <= 1.0 and row["latency_b1_ratio"] > 0
        assert row["speedup_efficiency_b128"] == pytest.approx(row["macs_ratio"] / row["latency_b128_ratio"], rel=1e-3)
        assert row["deploy_speedup_efficiency_b128"] == pytest.approx(
            row["macs_ratio"] / row["deploy_latency_b128_ratio"], rel=1e-3)  # BN folded, channels-last
        for what in ("latency_b1", "latency_b64", "latency_b128", "deploy_latency_b128"):
            assert row[f"{what}_ratio_iqr"] >= 0 and row[f"{what}_iqr_ms"] >= 0  # ratios within one run, with noise
        if name in {"tpe", "greedy", "ddpg"}:
            assert row["epochs"] == 0  # exported without finetuning
    # one interleaved run per batch size, its conditions recorded (the deploy forms join the batch-128 run)
    runs = result["latency"]["runs"]
    assert [r["batch_size"] for r in runs] == [1, 64, 128] and all(r["threads"] == 1 for r in runs)
    assert runs[2]["models"] == 2 * runs[0]["models"] and "interleaved" in result["latency"]["protocol"]
    assert rows["dense"]["latency_b128_ratio"] == 1.0 and rows["dense"]["deploy_latency_b128_ratio"] == 1.0
    assert set(result["targets"]["0.5"]) >= {"beats_baseline", "within_0_3_of_dense", "searches_under_20_min",
                                             "default_searcher", "best_returned_winner"}
    assert result["targets"]["0.5"]["default_searcher"] == "tpe"
    assert not (tmp_path / "compare_quick.partial.json").exists()  # removed once the full result is written
    saved = json.loads((tmp_path / "compare_quick.json").read_text())
    assert saved["rows"] == result["rows"]
    assert (tmp_path / "compare_quick.md").read_text().count("\n|") >= len(expected)


def _row(method: str, target: float | None, accuracy: float, macs_ratio: float, latency_ratio: float,
         search_s: float = 0.0) -> dict[str, object]:
    return {"method": method, "target": target, "accuracy": accuracy, "accuracy_se": 0.001, "macs_ratio": macs_ratio,
            "latency_b128_ratio": latency_ratio, "speedup_efficiency_b128": round(macs_ratio / latency_ratio, 4),
            "search_s": search_s}


def test_targets_are_read_off_the_rows(benchmark_script: Any) -> None:
    rows = [
        _row("dense", None, 0.930, 1.0, 1.0),
        _row("uniform-l1+ft", 0.5, 0.920, 0.50, 0.55),  # 2x fewer MACs, 1.82x faster: efficiency 0.91
        _row("global-l1+ft", 0.5, 0.925, 0.50, 0.80),  # efficiency 0.625
        _row("tpe", 0.5, 0.928, 0.49, 0.52, search_s=300.0),
        _row("greedy", 0.5, 0.921, 0.50, 0.50, search_s=1500.0),
        _row("random", 0.5, 0.929, 0.50, 0.50),
    ]
    compare = benchmark_script("compare")
    check = compare.check_targets(rows, ("tpe", "greedy", "random"))["0.5"]
    # the default searcher's winner is what counts; the best returned one is only reported as such
    assert check["default_searcher"] == "tpe" and check["best_baseline"] == "global-l1+ft"
    assert check["best_returned_winner"] == "random"
    assert check["default_minus_baseline"] == pytest.approx(0.003)
    assert check["beats_baseline"] is True  # 0.3 points > 2 x 0.14 (the SE of a difference of two 0.1-point SEs)
    close = compare.check_targets([*rows[:3], _row("tpe", 0.5, 0.926, 0.49, 0.52)], ("tpe",))["0.5"]
    assert close["beats_baseline"] is False and "within 2 standard errors" in close["summary"]
    assert check["gap_to_dense_points"] == pytest.approx(0.2) and check["within_0_3_of_dense"] is True
    assert check["methods_at_0_85_efficiency"] == ["greedy", "random", "tpe", "uniform-l1+ft"]
    assert check["slowest_search"] == "greedy" and check["searches_under_20_min"] is False
