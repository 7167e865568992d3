"""Per-group rounding from measured latency steps.

The step finder is checked against curves whose steps are known by construction (a staircase of width 8
or 16, kernels slow off multiples of 8, a line, a flat curve, noise as large as the stairs), and the whole
measurement against a recorded "machine" whose latency law per group is given: the rounding picked must
be that law's step. Real timing is only run for shape (the machine is shared: no assertion on speed).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from autoprune.engine.latency_steps import Curve, find_step, measure_latency_steps, step_counts
from autoprune.engine.structure import ModelStructure, PrunableGroup
from autoprune.errors import AutoPruneError
from autoprune.models import build_model
from autoprune.search_spaces import load_space, with_rounding

COUNTS = tuple(range(36, 65, 4))  # a 64-channel group, spacing 4, over two stairs of 16
Law = Callable[[int], float]


def _curve(law: Law, noise: float = 0.0, counts: tuple[int, ...] = COUNTS, seed: int = 0) -> Curve:
    """Latency ratios to the widest count under ``law``, with Gaussian noise of ``noise`` on each ratio."""
    rng = np.random.default_rng(seed)
    widest = law(counts[-1])
    values = [law(c) / widest + (rng.normal(0, noise) if c != counts[-1] else 0.0) for c in counts]
    return Curve(counts, tuple(values), max(noise, 1e-3))


def stairs(width: int) -> Law:
    return lambda c: 1.0 + math.ceil(c / width) * width / 64


@pytest.mark.parametrize("width", [8, 16])
def test_a_staircase_gives_its_width(width: int) -> None:
    fit = find_step(_curve(stairs(width), noise=0.005), (8, 16))
    assert (fit.step, fit.reason) == (width, "staircase")


def test_counts_off_the_fast_path_give_its_width() -> None:
    # multiples of 8 run a blocked kernel; the others a slower generic one (slower even than the next multiple)
    fit = find_step(_curve(lambda c: 1.0 + c / 64 + (0.4 if c % 8 else 0.0), noise=0.01), (8, 16))
    assert (fit.step, fit.reason) == (8, "staircase")


def test_stairs_on_a_slope_give_their_width() -> None:
    # recorded on this 2-core machine (ResNet-20 layer2.1.conv1, batch 128, deploy form, 2026-12-01): every
    # channel costs a little, and crossing 16 channels costs a jump (0.62 -> 0.89)
    recorded = Curve((4, 8, 12, 16, 20, 24, 28, 32), (0.47, 0.52, 0.59, 0.62, 0.89, 0.95, 1.01, 1.00), 0.011)
    assert (find_step(recorded, (8, 16)).step, find_step(recorded, (8, 16)).reason) == (16, "staircase")
    law = _curve(lambda c: 1.0 + c / 64 + 0.5 * math.ceil(c / 16), noise=0.005)
    assert find_step(law, (8, 16)).step == 16


def test_the_largest_step_that_fits_as_well_is_kept() -> None:
    # stairs of 16 are also stairs of 8 where the counts cannot tell them apart: only 16 and 32 measured around
    curve = _curve(stairs(16), noise=0.005)
    fit = find_step(curve, (8, 16, 32))  # 32 cannot be tried: the counts do not reach over two stairs of 32
    assert fit.step == 16 and 32 not in fit.rss


def test_a_line_a_flat_curve_and_noise_keep_the_fallback() -> None:
    assert find_step(_curve(lambda c: 1.0 + c / 64, noise=0.005), (8, 16)).reason == "smooth"
    assert find_step(_curve(lambda c: 2.0, noise=0.01), (8, 16)).reason == "flat"
    # stairs of 0.06 (ratio) under noise of 0.1, and a line under noise: hardly ever a step, almost never a wrong one
    noisy = [find_step(_curve(stairs(8), noise=0.1, seed=s), (8, 16)).step for s in range(200)]
    assert noisy.count(None) >= 180 and sum(s not in (None, 8) for s in noisy) <= 4
    lines = [find_step(_curve(lambda c: 1.0 + c / 64, noise=0.02, seed=s), (8, 16)).step for s in range(200)]
    assert sum(s is not None for s in lines) <= 2
    jump = Curve((4, 8, 12, 16, 20, 24, 28, 32), (0.22, 0.28, 0.32, 0.77, 0.85, 0.88, 0.93, 1.0), 0.005)
    assert find_step(jump, (8, 16)).reason == "irregular"  # one kernel switch between 12 and 16, no stairs
    assert find_step(Curve((8, 16), (0.5, 1.0), 0.01), (8,)).reason == "too few counts"


def test_counts_timed_cover_two_of_the_largest_steps_below_the_full_width() -> None:
    def group(channels: int, blocks: int = 1) -> PrunableGroup:
        return PrunableGroup("g", channels, (), 0, channel_groups=blocks)

    assert step_counts(group(64), 4, (8, 16)) == list(COUNTS)
    assert step_counts(group(16), 4, (8, 16)) == [4, 8, 12, 16]
    assert step_counts(group(24), 4, (8,)) == [12, 16, 20, 24]
    assert step_counts(group(30), 4, (8,)) == [16, 20, 24, 28, 30]  # the full width is always timed
    # 3 channel blocks: counts are multiples of lcm(4, 3) = 12, and a step of 16 becomes one of 48
    assert step_counts(group(96, blocks=3), 4, (16,)) == [12, 24, 36, 48, 60, 72, 84, 96]


@pytest.fixture(scope="module")
def resnet20() -> ModelStructure:
    return ModelStructure(build_model("resnet20", num_classes=10, in_channels=3).eval(), (1, 3, 32, 32))


def test_the_rounding_picked_is_the_recorded_machines_step(resnet20: ModelStructure) -> None:
    laws: dict[str, Law] = {"layer3.0.conv1": stairs(16), "layer3.1.conv1": stairs(8),
                            "layer2.0.conv1": stairs(8), "layer1.0.conv1": lambda c: 1.0 + c / 16}  # fmt: skip
    asked: dict[str, list[int]] = {}

    def recorded(group: PrunableGroup, counts: list[int]) -> tuple[Curve, float | None]:
        asked[group.name] = counts
        return _curve(laws[group.name], noise=0.005, counts=tuple(counts)), 2.5

    result = measure_latency_steps(resnet20, groups=list(laws), measure=recorded, fallback=4)
    assert result.rounding == {"layer3.0.conv1": 16, "layer3.1.conv1": 8, "layer2.0.conv1": 8, "layer1.0.conv1": 4}
    assert asked["layer3.0.conv1"] == list(COUNTS) and asked["layer1.0.conv1"] == [4, 8, 12, 16]
    data = result.to_dict()
    assert data["recorded"] is True and data["batch_size"] == 128 and data["form"] == "deploy"
    assert [g["reason"] for g in data["groups"]] == ["staircase", "staircase", "staircase", "smooth"]
    space = with_rounding(load_space("resnet20", resnet20), result.rounding)
    assert all(c % 16 == 0 for c in space.group("layer3.0.conv1").choices)
    assert all(c % 8 == 0 for c in space.group("layer2.0.conv1").choices)


def test_bad_settings_are_refused(resnet20: ModelStructure) -> None:
    with pytest.raises(AutoPruneError, match="scope 'net' is not one of layers, model"):
        measure_latency_steps(resnet20, scope="net")
    with pytest.raises(AutoPruneError, match="step 0"):
        measure_latency_steps(resnet20, steps=(0, 8))
    with pytest.raises(AutoPruneError, match="unknown group"):
        measure_latency_steps(resnet20, groups=["layer9.conv1"])


@pytest.mark.parametrize("scope", ["layers", "model"])
def test_real_timing_runs_in_both_scopes(scope: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 16, 3, padding=1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()  # fmt: skip
    structure = ModelStructure(net, (1, 3, 8, 8))
    result = measure_latency_steps(structure, batch_size=2, rounds=2, warmup=1, threads=1, scope=scope, fallback=2)
    counts = {g.name: g.curve.counts for g in result.groups}
    assert counts == {"0": (4, 8, 12, 16, 20, 24, 28, 32), "3": (4, 8, 12, 16)}
    for g in result.groups:
        assert g.curve.values[-1] == 1.0 and all(v > 0 for v in g.curve.values)
        assert g.round_to == (g.fit.step or 2) and g.widest_ms is not None and g.widest_ms > 0
    assert result.settings["scope"] == scope and result.settings["threads"] == 1
