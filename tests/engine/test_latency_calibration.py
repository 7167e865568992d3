"""Calibrating the latency table against whole-model measurements.

The comparison of calibrated and uncalibrated predictions runs on measurements recorded once (stored
here), so it does not depend on this machine's load; the tests that time anything check only structure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import autoprune.engine.latency_calibration as calibration_module
from autoprune.engine.latency_calibration import (
    LatencyCalibration,
    calibration_candidates,
    features,
    fit_calibration,
    ratio_mape,
)
from autoprune.engine.latency_table import LatencyTable, build_latency_table
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError
from autoprune.models import build_model

# Recorded by `benchmarks/latency_table.py --threads 2 --form deploy` (benchmarks/results/latency_table_deploy.json,
# "spread" set): ResNet-20 on 3x32x32, deploy form. Per model (the dense one first): the table's layer sum (ms),
# MACs, kept activations, and the measured latency (ms).
RECORDED: dict[int, tuple[float, list[tuple[float, float, float, float]]]] = {
    1: (0.6366, [
        (1.1498, 40813184, 200714, 1.6906), (0.9668, 20124048, 145930, 1.4522), (1.0516, 27439504, 171530, 1.5726),
        (0.8517, 14926384, 118282, 1.3268), (0.8469, 13926720, 115210, 1.2806), (1.0283, 22833472, 157194, 1.5228),
        (0.9138, 16529728, 132618, 1.3886), (1.1498, 40813184, 200714, 1.7038), (0.9741, 19505472, 139274, 1.4360),
        (1.1540, 37223040, 193546, 1.7035), (1.1759, 33649200, 179722, 1.7039), (1.0737, 25579920, 160266, 1.5847),
        (0.8373, 14201152, 117258, 1.2956), (1.1272, 37958192, 196618, 1.6770), (0.8512, 14074176, 112138, 1.2942),
        (0.9401, 17007072, 134666, 1.3888), (0.8399, 13353440, 115210, 1.2765), (0.9610, 19390864, 131594, 1.4089),
        (1.1533, 33098288, 183306, 1.6984), (0.8539, 15188288, 139786, 1.3237), (0.8728, 14918272, 115210, 1.3153),
    ]),
    64: (17.0649, [
        (24.0301, 40813184, 200714, 47.2013), (15.7610, 20124048, 145930, 26.3751),
        (19.8512, 27439504, 171530, 40.4977), (13.7940, 14926384, 118282, 17.7785),
        (12.4225, 13926720, 115210, 21.3552), (16.7561, 22833472, 157194, 29.7945),
        (14.1168, 16529728, 132618, 23.7266), (24.0301, 40813184, 200714, 47.6407),
        (15.9518, 19505472, 139274, 28.7292), (23.2421, 37223040, 193546, 42.4880),
        (22.8974, 33649200, 179722, 31.1661), (18.8046, 25579920, 160266, 30.3787),
        (12.6100, 14201152, 117258, 23.3623), (23.8980, 37958192, 196618, 45.8085),
        (12.3775, 14074176, 112138, 18.3514), (14.1295, 17007072, 134666, 21.8308),
        (12.3264, 13353440, 115210, 21.2862), (15.7784, 19390864, 131594, 25.3384),
        (22.6045, 33098288, 183306, 38.7938), (14.0136, 15188288, 139786, 29.0892),
        (12.7967, 14918272, 115210, 18.4270),
    ]),
}  # fmt: skip


@pytest.mark.parametrize("batch", [1, 64])
def test_the_calibrated_predictor_beats_the_table_on_recorded_measurements(batch: int) -> None:
    overhead, samples = RECORDED[batch]
    dense, candidates = samples[0], samples[1:]
    fit_on, held_out = [dense, *candidates[0::2]], candidates[1::2]  # fit on half, judge on the other half
    calibration = fit_calibration(fit_on, table_overhead_ms=overhead)
    measured = [s[3] / dense[3] for s in held_out]
    table = [(overhead + s[0]) / (overhead + dense[0]) for s in held_out]
    calibrated = [calibration.predict(*s[:3]) / calibration.predict(*dense[:3]) for s in held_out]
    assert ratio_mape(calibrated, measured) < ratio_mape(table, measured)
    assert calibration.fit_mape_pct["calibrated"] < calibration.fit_mape_pct["table"]
    assert all(c >= 0 for c in calibration.coefficients) and calibration.terms != ("table",)


def test_exact_measurements_are_fitted_exactly() -> None:
    rng = np.random.default_rng(0)
    truth = (0.5, 2e-7, 3e-5, 4.0)  # layer scale, ms per MAC, ms per activation, fixed ms
    rows = [(float(rng.uniform(5, 20)), float(rng.uniform(1e7, 4e7)), float(rng.uniform(1e5, 2e5))) for _ in range(10)]
    samples = [(*r, float(np.dot(truth, (*r, 1.0)))) for r in rows]
    calibration = fit_calibration(samples)
    assert calibration.fit_mape_pct["calibrated"] == pytest.approx(0, abs=1e-6)
    assert calibration.fit_mape_pct["leave_one_out"] == pytest.approx(0, abs=1e-6)
    for r, s in zip(rows, samples, strict=True):
        assert calibration.predict(*r) == pytest.approx(s[3], rel=1e-6)


def test_the_table_is_kept_where_no_fit_predicts_better() -> None:
    overhead = 2.0
    rows = [(10.0, 3e7, 2e5), (6.0, 1e7, 1e5), (8.0, 2.5e7, 1.2e5), (7.0, 1.1e7, 1.9e5), (9.0, 1.5e7, 1.4e5)]
    calibration = fit_calibration([(*r, r[0] + overhead) for r in rows], table_overhead_ms=overhead)
    assert calibration.terms == ("table",) and calibration.coefficients == (1.0, 0.0, 0.0, overhead)
    assert calibration.fit_mape_pct["calibrated"] == calibration.fit_mape_pct["table"] == pytest.approx(0)


def test_coefficients_stay_non_negative_and_too_few_samples_are_refused() -> None:
    # time falls as the layer sum grows: no non-negative layer scale explains it; another term must
    samples = [(10.0, 3e7, 2e5, 5.0), (20.0, 2e7, 1e5, 3.0), (30.0, 1e7, 1.5e5, 4.0), (40.0, 1e7, 0.9e5, 2.5)]
    calibration = fit_calibration(samples)
    assert all(c >= 0 for c in calibration.coefficients)
    with pytest.raises(AutoPruneError, match="at least 3"):
        fit_calibration(samples[:2])
    with pytest.raises(AutoPruneError, match="positive"):
        fit_calibration([*samples[:2], (1.0, 1.0, 1.0, 0.0)])


def test_candidates_spread_over_the_choices() -> None:
    choices = {"a": [4, 8, 12, 16], "b": [2, 4, 6, 8, 10, 12]}
    drawn = calibration_candidates(choices, 9, seed=3)
    assert len(drawn) == 9 and drawn == calibration_candidates(choices, 9, seed=3)
    assert drawn[0] == {"a": 4, "b": 2}  # the uniform ones start at the smallest choice
    assert all(c[name] in options for c in drawn for name, options in choices.items())
    assert len({tuple(sorted(c.items())) for c in drawn}) > 3


@pytest.fixture(scope="module")
def small() -> tuple[ModelStructure, dict[str, list[int]]]:
    structure = ModelStructure(build_model("resnet20", num_classes=10, in_channels=1).eval(), (1, 1, 8, 8))
    return structure, {g.name: sorted({g.channels // 2, g.channels}) for g in structure.groups}


def test_a_calibrated_table_predicts_with_its_calibration_and_keeps_it_in_json(
    small: tuple[ModelStructure, dict[str, list[int]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    structure, choices = small
    runs: list[list[str]] = []
    real = calibration_module.measure_interleaved

    def spy(models: Any, shape: Any, **kwargs: Any) -> Any:
        runs.append(list(models))
        return real(models, shape, **{**kwargs, "rounds": 3})

    monkeypatch.setattr(calibration_module, "measure_interleaved", spy)
    table = build_latency_table(structure, choices, repeats=2, warmup=1, threads=1, calibrate=3)
    assert runs == [["dense", "0", "1", "2"]]  # the candidates timed in one run with the dense model
    cal = table.calibration
    assert cal is not None and len(cal.samples) == 4
    assert cal.samples[0][:3] == (table.layers_ms(structure, {}), *features(structure, {}))  # dense first
    counts = {g.name: min(choices[g.name]) for g in structure.groups}
    terms = (table.layers_ms(structure, counts), *features(structure, counts))
    assert table.predict(structure, counts) == pytest.approx(cal.predict(*terms))
    assert table.predict(structure, counts, calibrated=False) == pytest.approx(table.overhead_ms + terms[0])
    loaded = LatencyTable.load(table.save(tmp_path / "t.json"))
    assert loaded.calibration == cal and loaded.predict(structure, counts) == table.predict(structure, counts)
    old = {k: v for k, v in json.loads((tmp_path / "t.json").read_text()).items() if k != "calibration"}
    assert LatencyTable.from_dict(old).calibration is None  # tables written before calibration still load
    assert LatencyCalibration.from_dict(cal.to_dict()) == cal
