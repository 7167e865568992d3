"""Latency budgets: the per-layer latency table and search spaces with ``metric: latency``.

Timings are noisy (other jobs share the machine), so nothing here asserts on absolute times: only on
facts that hold by construction (the overhead closes the dense sum, JSON round-trips) or structurally
(every reachable width is in the table, the widths match the physically pruned model, the smallest
sub-network is predicted faster than the dense one, projected candidates meet the predicted budget).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from autoprune.engine.latency_table import LatencyTable, build_latency_table, layer_widths, reachable_shapes
from autoprune.engine.plan import PrunePlan, apply_plan
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError, BudgetError, CheckpointError
from autoprune.search_spaces import SearchSpace, auto_space, load_space, space_from_dict

QUICK: dict[str, Any] = {"repeats": 3, "warmup": 1, "threads": 1}  # one thread: robust to a busy machine


@pytest.fixture(scope="module")
def macs_space(resnet20: ModelStructure) -> SearchSpace:
    return load_space("resnet20", resnet20)


@pytest.fixture(scope="module")
def table(resnet20: ModelStructure, macs_space: SearchSpace) -> LatencyTable:
    return build_latency_table(resnet20, macs_space.choices, **QUICK)


@pytest.fixture(scope="module")
def latency_space(resnet20: ModelStructure, macs_space: SearchSpace, table: LatencyTable) -> SearchSpace:
    loose = dataclasses.replace(macs_space, metric="latency", target=1.0, latency_table=table)
    target = (loose.min_cost() + 1.0) / 2  # reachable whatever the machine's timings
    return load_space({**macs_space.to_dict(), "metric": "latency", "target": target}, resnet20, latency_table=table)


def _dense_widths(structure: ModelStructure) -> dict[str, tuple[int, int]]:
    modules = dict(structure.model.named_modules())
    widths = {}
    for name in structure.costs:
        m = modules[name]
        widths[name] = (m.in_features, m.out_features) if isinstance(m, nn.Linear) else (m.in_channels, m.out_channels)
    return widths


def _first_k_plan(structure: ModelStructure, counts: dict[str, int]) -> PrunePlan:
    return PrunePlan(
        input_shape=structure.input_shape,
        channels={g.name: g.channels for g in structure.groups},
        kept={g.name: list(range(counts.get(g.name, g.channels))) for g in structure.groups},
    )


# ---------------------------------------------------------------------- the table
def test_table_has_every_width_the_bundled_space_reaches(
    resnet20: ModelStructure, macs_space: SearchSpace, table: LatencyTable, latency_space: SearchSpace
) -> None:
    assert set(table.entries) == set(resnet20.costs)
    assert table.missing(resnet20, macs_space.choices) == []
    assert table.batch_size == 1 and table.threads >= 1 and table.device == "cpu"
    assert all(ms > 0 for layer in table.entries.values() for ms in layer.values())
    streams = {"conv1": 3, "layer2.0.shortcut.0": 5, "layer3.0.shortcut.0": 5}  # choices of the residual streams
    # by hand: stem conv = 3 input channels x the stage-1 stream's choices; an inner conv of stage 3 reads the
    # stream (5 choices) and writes its own group (7); the head reads the stream and keeps its 10 outputs
    assert set(table.entries["conv1"]) == {(3, c) for c in macs_space.group("conv1").choices}
    assert len(table.entries["layer3.1.conv1"]) == streams["layer3.0.shortcut.0"] * 7
    assert set(table.entries["fc"]) == {(c, 10) for c in macs_space.group("layer3.0.shortcut.0").choices}
    rng = np.random.default_rng(0)
    for space in (macs_space, latency_space):
        for _ in range(25):
            counts = space.project(rng.random(len(space.groups)))
            assert table.predict(resnet20, counts) == pytest.approx(
                table.overhead_ms + sum(table.entries[n][w] for n, w in layer_widths(resnet20, counts).items())
            )


def test_widths_match_the_physically_pruned_model(resnet20: ModelStructure, macs_space: SearchSpace) -> None:
    rng = np.random.default_rng(1)
    reachable = reachable_shapes(resnet20, macs_space.choices)
    for _ in range(3):
        counts = macs_space.sample(rng)
        pruned = dict(apply_plan(resnet20.model, _first_k_plan(resnet20, counts)).named_modules())
        widths = layer_widths(resnet20, counts)
        for name, (n_in, n_out) in widths.items():
            m = pruned[name]
            real = (m.in_features, m.out_features) if isinstance(m, nn.Linear) else (m.in_channels, m.out_channels)
            assert real == (n_in, n_out), name
            assert (n_in, n_out) in reachable[name]


def test_dense_prediction_is_the_measured_dense_latency(resnet20: ModelStructure, table: LatencyTable) -> None:
    dense = _dense_widths(resnet20)
    assert layer_widths(resnet20, {}) == dense
    total = table.overhead_ms + sum(table.entries[name][w] for name, w in dense.items())
    assert abs(table.predict(resnet20, {}) - total) < 1e-6
    assert abs(table.predict(resnet20, {g.name: g.channels for g in resnet20.groups}) - total) < 1e-6


def test_smallest_is_predicted_faster_than_largest(
    resnet20: ModelStructure, table: LatencyTable, latency_space: SearchSpace
) -> None:
    # the smallest sub-network runs every layer at most as wide, at 1/4-1/2 of the widths: far beyond noise
    smallest = table.predict(resnet20, latency_space.smallest())
    assert smallest < table.predict(resnet20, latency_space.largest())
    assert latency_space.min_cost() < 1.0 == latency_space.max_cost()


def test_json_round_trip_gives_identical_predictions(
    resnet20: ModelStructure, macs_space: SearchSpace, table: LatencyTable, tmp_path: Path
) -> None:
    path = table.save(tmp_path / "table.json")
    raw = json.loads(path.read_text())
    assert raw["entries"]["layer3.1.conv1"]["64,64"] == table.entries["layer3.1.conv1"][(64, 64)]
    loaded = LatencyTable.load(path)
    assert loaded == table
    rng = np.random.default_rng(2)
    for _ in range(10):
        counts = macs_space.sample(rng)
        assert loaded.predict(resnet20, counts) == table.predict(resnet20, counts)


# ---------------------------------------------------------------------- latency spaces
def test_latency_space_projects_onto_the_predicted_budget(
    resnet20: ModelStructure, table: LatencyTable, latency_space: SearchSpace
) -> None:
    assert latency_space.metric == "latency"
    dense_ms = table.predict(resnet20, {})
    rng = np.random.default_rng(3)
    for _ in range(50):
        counts = latency_space.project(rng.random(len(latency_space.groups)))
        ratio = table.predict(resnet20, counts) / dense_ms
        assert ratio <= latency_space.target + 1e-9
        assert latency_space.cost(counts) == pytest.approx(ratio, rel=1e-12)
        assert latency_space.feasible(counts)
    widest = latency_space.uniform(1.0)
    assert latency_space.cost(widest) <= latency_space.target + 1e-9


def test_latency_space_serializes_without_its_table(
    resnet20: ModelStructure, table: LatencyTable, latency_space: SearchSpace
) -> None:
    data = latency_space.to_dict()
    assert data["metric"] == "latency"
    assert json.loads(json.dumps(data)) == data  # the table is not in it
    assert space_from_dict(data, resnet20, latency_table=table) == latency_space
    with pytest.raises(AutoPruneError, match="needs a latency table"):
        space_from_dict(data, resnet20)


def test_latency_budget_errors_name_the_smallest_fraction(
    resnet20: ModelStructure, macs_space: SearchSpace, table: LatencyTable, latency_space: SearchSpace
) -> None:
    lowest = latency_space.min_cost()
    with pytest.raises(BudgetError) as info:
        load_space({**macs_space.to_dict(), "metric": "latency", "target": lowest / 2}, resnet20, latency_table=table)
    assert f"the smallest sub-network keeps {lowest:.3f} of the dense latency" in str(info.value)


def test_latency_without_a_table_is_a_clear_error(resnet20: ModelStructure, macs_space: SearchSpace) -> None:
    for make in (
        lambda: load_space({"metric": "latency"}, resnet20),
        lambda: auto_space(resnet20, metric="latency"),
        lambda: dataclasses.replace(macs_space, metric="latency"),
    ):
        with pytest.raises(AutoPruneError, match=r"needs a latency table.*build_latency_table.*latency_table="):
            make()


def test_a_table_for_other_choices_is_refused(resnet20: ModelStructure, macs_space: SearchSpace) -> None:
    narrow = {name: choices[-2:] for name, choices in macs_space.choices.items()}
    small = build_latency_table(resnet20, narrow, **QUICK)
    with pytest.raises(AutoPruneError, match=r"lacks \d+ layer widths.*rebuild it with build_latency_table"):
        dataclasses.replace(macs_space, metric="latency", target=1.0, latency_table=small)
    with pytest.raises(AutoPruneError, match=r"no entry for layer '.*' with \(in, out\)"):
        small.predict(resnet20, macs_space.smallest())
    with pytest.raises(AutoPruneError, match="unknown group 'conv9'"):
        small.predict(resnet20, {"conv9": 4})
    with pytest.raises(AutoPruneError, match=r"choices of group 'conv1' must be .* in \[1, 16\]"):
        build_latency_table(resnet20, {"conv1": [0, 16]}, **QUICK)


def test_malformed_table_files_are_checkpoint_errors(table: LatencyTable, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        LatencyTable.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"broken\.json is corrupt"):
        LatencyTable.load(broken)
    with pytest.raises(CheckpointError, match="version 7"):
        LatencyTable.from_dict({**table.to_dict(), "table_version": 7})
    with pytest.raises(CheckpointError, match="malformed"):
        LatencyTable.from_dict({**table.to_dict(), "entries": {"fc": {"64": 1.0}}})


# ---------------------------------------------------------------------- other layer kinds
class _Mixed(nn.Module):
    """A depthwise conv, a grouped conv, a conv at another resolution and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.dw, self.bn1 = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16)
        self.grouped, self.bn2 = nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=4), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.dw(torch.relu(self.bn0(self.stem(x))))))
        x = torch.relu(self.bn2(self.grouped(x)))
        return self.fc(x.mean(dim=(2, 3)))


def test_depthwise_and_grouped_layers() -> None:
    structure = ModelStructure(_Mixed(), (1, 3, 16, 16))
    space = auto_space(structure, target=0.6, round_to=4)
    table = build_latency_table(structure, space.choices, **QUICK)
    assert all(i == o for i, o in table.entries["dw"])  # depthwise: inputs follow outputs
    assert all(i % 4 == 0 and o % 4 == 0 for i, o in table.entries["grouped"])  # 4 blocks: multiples of 4
    # (no latency space here: layers this small time as per-call overhead, so widths barely matter)
    rng = np.random.default_rng(4)
    for _ in range(20):
        counts = space.sample(rng)
        pruned = dict(apply_plan(structure.model, _first_k_plan(structure, counts)).named_modules())
        for name, (n_in, n_out) in layer_widths(structure, counts).items():
            m = pruned[name]
            real = (m.in_features, m.out_features) if isinstance(m, nn.Linear) else (m.in_channels, m.out_channels)
            assert real == (n_in, n_out), name
        assert math.isfinite(table.predict(structure, counts))


# ---------------------------------------------------------------------- deploy form
def test_deploy_form_times_folded_channels_last_layers(resnet20: ModelStructure, macs_space: SearchSpace,
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import autoprune.engine.latency_table as lt

    timed: list[tuple[nn.Module, bool]] = []
    real = lt.measure_latency

    def spy(model: nn.Module, shape: tuple[int, ...], **kwargs: Any) -> Any:
        timed.append((model, kwargs.get("channels_last", False)))
        return real(model, shape, **kwargs)

    monkeypatch.setattr(lt, "measure_latency", spy)
    table = build_latency_table(resnet20, macs_space.choices, **QUICK, form="deploy")
    assert table.form == "deploy"
    models = [m for m, _ in timed if len(list(m.children())) > 0]  # the dense model (timed three times)
    assert len(models) == 3
    for model in models:  # the deploy form: no BatchNorm left, channels-last weights
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    layers = [(m, cl) for m, cl in timed if isinstance(m, nn.Conv2d)]
    assert layers and all(cl and m.weight.is_contiguous(memory_format=torch.channels_last) for m, cl in layers)
    assert all(m.bias is not None for m, _ in layers)  # every ResNet-20 conv feeds a BatchNorm: folded, biased
    assert LatencyTable.load(table.save(tmp_path / "t.json")).form == "deploy"


def test_table_forms_are_checked(resnet20: ModelStructure, macs_space: SearchSpace, table: LatencyTable) -> None:
    assert table.form == "eager"
    old = {k: v for k, v in table.to_dict().items() if k != "form"}  # written before tables had a form
    assert LatencyTable.from_dict(old).form == "eager"
    with pytest.raises(CheckpointError, match="form 'fast' is not one of eager, deploy"):
        LatencyTable.from_dict({**table.to_dict(), "form": "fast"})
    with pytest.raises(AutoPruneError, match="form 'fast' is not one of eager, deploy"):
        build_latency_table(resnet20, macs_space.choices, **QUICK, form="fast")
