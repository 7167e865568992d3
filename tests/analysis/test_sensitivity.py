"""Layer sensitivity against independent computations: masking by hand, torch's own KL, hand-made tables."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from autoprune.analysis.sensitivity import (
    SensitivityRow,
    SensitivityTable,
    group_damage,
    keep_ratio_lower_bounds,
    measure_sensitivity,
    sensitivity_seed_ratios,
)
from autoprune.errors import AutoPruneError
from autoprune.supernet import Supernet

GROUPS = ["layer1.0.conv1", "layer2.1.conv1", "layer3.0.shortcut.0"]


@pytest.fixture(scope="module")
def table(digits_supernet):  # type: ignore[no-untyped-def]
    d = digits_supernet
    return measure_sensitivity(d.dense, d.splits.input_shape(), d.splits.val_loader(64), ratios=(0.25, 0.5, 1.0),
                               groups=GROUPS, bn_batches=0)  # fmt: skip


def test_whole_group_has_zero_drop_and_zero_kl(table) -> None:  # type: ignore[no-untyped-def]
    whole = [r for r in table.rows if r.keep_ratio == 1.0]
    assert len(whole) == len(GROUPS)
    for r in whole:  # computed, not short-circuited: bn_batches=0 extracts the full model and runs it
        assert r.kept == r.channels
        assert r.accuracy_drop == 0.0
        assert r.kl < 1e-6
    assert all(r.kl >= 0.0 for r in table.rows)
    assert table.groups == GROUPS
    assert any(r.kl > 1e-3 for r in table.rows if r.keep_ratio == 0.25)  # pruning a quarter changes the outputs


def test_a_cell_matches_masking_by_hand(digits_supernet, table) -> None:  # type: ignore[no-untyped-def]
    """layer1.0.conv1 at 50%: zeroing the removed channels' BN affine output is the same function as removal."""
    d = digits_supernet
    net = Supernet(copy.deepcopy(d.dense), d.splits.input_shape())  # same l1 ranking the analysis uses
    kept = net.kept_indices("layer1.0.conv1", 8)
    masked = copy.deepcopy(d.dense).eval()
    bn = masked.layer1[0].bn1
    drop = torch.ones(16, dtype=torch.bool)
    drop[kept] = False
    with torch.no_grad():
        bn.weight[drop] = 0.0
        bn.bias[drop] = 0.0
    xs, ys = zip(*d.splits.val_loader(64), strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    with torch.no_grad():
        dense_logits, masked_logits = d.dense.eval()(x), masked(x)
    acc = float((masked_logits.argmax(1) == y).float().mean())
    dense_acc = float((dense_logits.argmax(1) == y).float().mean())
    kl = float(kl_divergence(Categorical(logits=dense_logits), Categorical(logits=masked_logits)).mean())
    row = next(r for r in table.rows if r.group == "layer1.0.conv1" and r.keep_ratio == 0.5)
    assert row.kept == 8
    assert row.accuracy == pytest.approx(acc, abs=1e-6)
    assert row.accuracy_drop == pytest.approx(dense_acc - acc, abs=1e-6)
    assert row.kl == pytest.approx(kl, rel=1e-3, abs=1e-5)
    assert table.dense_accuracy == pytest.approx(dense_acc, abs=1e-6)


def test_adaptive_bn_keeps_whole_groups_at_zero(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    d = digits_supernet
    t = measure_sensitivity(d.dense, d.splits.input_shape(), d.splits.val_loader(64), ratios=(0.5, 1.0),
                            groups=GROUPS[:1], calibration=d.splits.calibration_loader(64), bn_batches=2)  # fmt: skip
    whole = t.curve(GROUPS[0])[-1]
    assert (whole.accuracy_drop, whole.kl) == (0.0, 0.0)


def test_bad_inputs_are_user_errors(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    d = digits_supernet
    with pytest.raises(AutoPruneError, match="keep ratios in"):
        measure_sensitivity(d.dense, d.splits.input_shape(), d.splits.val_loader(64), ratios=(0.0, 1.0))
    with pytest.raises(AutoPruneError, match=r"layer1\.0\.conv1"):
        measure_sensitivity(d.dense, d.splits.input_shape(), d.splits.val_loader(64), groups=["layer1.0.conv9"])


def _row(group: str, ratio: float, drop: float, channels: int = 16) -> SensitivityRow:
    kept = round(ratio * channels)
    return SensitivityRow(group, ratio, kept, channels, kept / channels, 0.9 - drop, drop, drop * 2)


def _hand_table() -> SensitivityTable:
    rows = []
    # robust: small drops everywhere; fragile: hurts at once; bumpy: fine at 0.25, bad at 0.5 (non-monotone)
    for ratio, robust, fragile, bumpy in ((0.25, 0.004, 0.3, 0.0), (0.5, 0.002, 0.1, 0.2), (0.75, 0.0, 0.05, 0.0),
                                          (1.0, 0.0, 0.0, 0.0)):  # fmt: skip
        rows += [_row("layer1.0.conv1", ratio, robust), _row("conv1", ratio, fragile)]
        rows.append(_row("layer1.1.conv1", ratio, bumpy))
    return SensitivityTable(rows)


def test_lower_bounds_by_hand() -> None:
    bounds = keep_ratio_lower_bounds(_hand_table(), max_drop=0.01)
    # bumpy stops at 0.5 (its drop there exceeds the threshold) even though 0.25 would pass
    assert bounds == {"layer1.0.conv1": 0.25, "conv1": 1.0, "layer1.1.conv1": 0.75}
    assert keep_ratio_lower_bounds(_hand_table(), max_drop=0.06)["conv1"] == 0.75
    assert keep_ratio_lower_bounds(_hand_table(), max_drop=0.5, metric="kl")["conv1"] == 0.5
    with pytest.raises(AutoPruneError, match="metric"):
        keep_ratio_lower_bounds(_hand_table(), metric="loss")


def test_seed_ratios_meet_the_budget_and_follow_sensitivity(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    space = digits_supernet.space
    seeds = sensitivity_seed_ratios(_hand_table(), space)
    assert seeds and len({tuple(sorted(s.items())) for s in seeds}) == len(seeds)
    for seed in seeds:
        assert set(seed) == set(space.names)
        counts = space.counts(seed)
        assert space.feasible(counts)
        assert space.cost(counts) > 0.4  # the budget (0.5) is used, not wasted
        assert seed["conv1"] >= seed["layer1.0.conv1"]  # the fragile group is pruned less than the robust one


def test_csv_round_trip_and_damage(tmp_path, table, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    path = table.save_csv(tmp_path / "sensitivity.csv")
    back = SensitivityTable.load_csv(path)
    assert back.rows == table.rows
    damage = group_damage(table, digits_supernet.space, "kl")
    for g in digits_supernet.space.groups:
        assert damage[g.name].shape == (len(g.choices),)
        assert damage[g.name][-1] == pytest.approx(0.0, abs=1e-6)  # the largest choice is whole: no damage
    (tmp_path / "bad.csv").write_text("group,kept\nx,1\n")
    with pytest.raises(AutoPruneError, match=r"not a sensitivity\.csv"):
        SensitivityTable.load_csv(tmp_path / "bad.csv")


def test_seeds_are_the_first_candidates_of_an_optuna_search(digits_supernet, table) -> None:  # type: ignore[no-untyped-def]
    """The hand-off to the Optuna searchers: ``seed_ratios`` are evaluated first, unchanged."""
    from autoprune.search import SearchConfig, make_searcher, run_search

    space = digits_supernet.space
    seeds = sensitivity_seed_ratios(table, space, max_drops=(0.05, 0.5))
    searcher = make_searcher("tpe", space, seed=0, seed_ratios=seeds, seed_uniform=False)
    result = run_search(searcher, digits_supernet.evaluator(), SearchConfig(trials=len(seeds)), progress=False)
    assert [t.counts for t in result.trials] == [space.counts(s) for s in seeds]
    assert all(t.feasible for t in result.trials)
