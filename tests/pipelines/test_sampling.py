"""The sub-model sampling pipeline against independent facts: budget, ranking, counted MACs, scipy's Spearman."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from autoprune.errors import AutoPruneError
from autoprune.metrics import count_cost
from autoprune.pipelines.sampling import SamplingConfig, run_sampling, spearman
from autoprune.pipelines.sampling_strategies import importance_damage
from autoprune.search import SearchConfig, make_searcher, run_search
from autoprune.search.sampling import choice_probabilities, draw_candidates
from autoprune.supernet import Supernet
from autoprune.training import TrainConfig

TINY = {"samples": 6, "top_k": 2, "bn_batches": 2, "finetune_batches": 3,
        "finetune": TrainConfig(epochs=1, lr=0.01, batch_size=64)}  # fmt: skip


def _run(d, out: Path | None = None, **overrides):  # type: ignore[no-untyped-def]
    config = SamplingConfig(**{**TINY, **overrides})  # type: ignore[arg-type]
    return run_sampling(
        d.dense, d.splits.input_shape(), d.space, train_loader=d.splits.train_loader(64, seed=0),
        val_batches=d.splits.val_loader(64), calibration=d.splits.calibration_loader(64), config=config, out=out,
    )  # fmt: skip


@pytest.fixture(scope="module")
def uniform_run(digits_supernet, tmp_path_factory):  # type: ignore[no-untyped-def]
    before = copy.deepcopy(digits_supernet.dense.state_dict())
    out = tmp_path_factory.mktemp("sample")
    result = _run(digits_supernet, out)
    after = digits_supernet.dense.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the dense model is left alone
    return result, out


def test_every_candidate_meets_the_budget_and_is_distinct(uniform_run, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    result, _ = uniform_run
    space = digits_supernet.space
    assert len(result.candidates) == 6
    keys = {tuple(sorted(c.counts.items())) for c in result.candidates}
    assert len(keys) == 6
    for c in result.candidates:
        assert space.feasible(c.counts)
        assert c.result.macs_ratio <= space.target + 1e-9
        assert space.cost(c.counts) > 0.4  # filled toward the budget, not far below it
        assert c.score_without_bn is not None


def test_the_uniform_network_is_one_of_the_candidates(uniform_run, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    result, _ = uniform_run
    space = digits_supernet.space
    uniform = [c for c in result.candidates if c.is_uniform]
    assert len(uniform) == 1
    assert uniform[0].counts == space.uniform(1.0)
    assert uniform[0].result.accuracy == result.uniform.accuracy  # scored like every other candidate


def test_top_k_are_the_best_scored_and_best_is_best_finetuned(uniform_run) -> None:  # type: ignore[no-untyped-def]
    result, _ = uniform_run
    scores = sorted((c.result.accuracy for c in result.candidates), reverse=True)
    assert sorted((result.candidates[i].result.accuracy for i in result.top), reverse=True) == scores[:2]
    tuned = [result.candidates[i].finetuned_val_accuracy for i in result.top]
    assert all(t is not None for t in tuned)
    assert result.best.finetuned_val_accuracy == max(tuned)  # type: ignore[type-var]
    others = [c for c in result.candidates if c.index not in result.top]
    assert all(c.finetuned_val_accuracy is None for c in others)


def test_exported_model_is_the_best_candidate(uniform_run, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    result, _ = uniform_run
    d = digits_supernet
    counted = count_cost(result.model, d.splits.input_shape()).macs
    assert counted == d.space.structure.predict_macs(result.best.counts) == result.best.result.macs
    assert result.plan.keep_ratios == pytest.approx(
        {g.name: result.best.counts.get(g.name, g.channels) / g.channels for g in d.space.structure.groups})


def test_trials_log_and_correlations(uniform_run) -> None:  # type: ignore[no-untyped-def]
    result, out = uniform_run
    lines = [json.loads(x) for x in (out / "trials.jsonl").read_text().splitlines()]
    assert [x["number"] for x in lines] == list(range(6))
    assert sum("finetuned_val_accuracy" in x["info"] for x in lines) == 2
    header = (out / "trials.csv").read_text().splitlines()[0]
    assert header.startswith("number,state,feasible,accuracy,loss,macs,macs_ratio")
    corr = result.correlation
    assert corr["n_top_k"] == 2 and corr["n_all"] == 6
    scores = [c.result.accuracy for c in result.candidates]
    plain = [c.score_without_bn for c in result.candidates]
    expected = spearmanr(scores, plain).statistic
    assert corr["adaptive_bn_vs_no_bn_score_all"] == pytest.approx(expected)


@pytest.mark.parametrize("strategy", ["importance", "sensitivity"])
def test_other_strategies_stay_within_budget(digits_supernet, strategy: str) -> None:  # type: ignore[no-untyped-def]
    result = _run(digits_supernet, strategy=strategy, samples=4, top_k=1, score_without_bn=False)
    assert all(digits_supernet.space.feasible(c.counts) for c in result.candidates)
    assert (result.sensitivity is not None) == (strategy == "sensitivity")


def test_low_damage_groups_are_pruned_more(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    space = digits_supernet.space
    damage = {g.name: np.zeros(len(g.choices)) for g in space.groups}
    fragile = "layer2.1.conv1"
    g = space.group(fragile)
    damage[fragile] = np.array([1.0 - g.ratio(c) for c in g.choices]) * 50  # pruning it costs a lot
    assert np.all(np.diff(choice_probabilities(space, damage, temperature=1.0)[fragile]) > 0)  # wider: likelier
    probs = choice_probabilities(space, damage, temperature=0.2)  # damage is measured in its median: unit-free
    assert probs[fragile][-1] > 0.7 and np.allclose(sum(probs[fragile]), 1.0)
    assert np.allclose(probs["layer2.2.conv1"], 1 / len(space.group("layer2.2.conv1").choices))
    drawn = draw_candidates(space, probs, 20, np.random.default_rng(0))
    mean = {n: np.mean([space.ratios(c)[n] for c in drawn]) for n in (fragile, "layer2.2.conv1")}
    assert mean[fragile] > mean["layer2.2.conv1"] + 0.2
    assert all(space.feasible(c) for c in drawn)


def test_importance_damage_grows_as_channels_go(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    d = digits_supernet
    net = Supernet(copy.deepcopy(d.dense), d.splits.input_shape())
    damage = importance_damage(net, d.space)
    for g in d.space.groups:
        assert np.all(np.diff(damage[g.name]) <= 1e-12)  # keeping more channels never removes more importance
        assert damage[g.name][-1] == pytest.approx(0.0, abs=1e-9) or g.max_count < g.channels


def test_spearman_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=12), rng.normal(size=12)
    x[3] = x[5]  # a tie
    assert spearman(list(x), list(y)) == pytest.approx(spearmanr(x, y).statistic)
    assert spearman([1.0], [2.0]) is None
    assert spearman([1.0, 1.0], [1.0, 2.0]) is None


def test_final_epochs_finetune_the_chosen_best_further(uniform_run, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    from autoprune.metrics import evaluate_accuracy

    first, _ = uniform_run
    assert first.final_val_accuracy is None and first.final_history is None
    result = _run(digits_supernet, final_epochs=2)
    # the same draws, scores and top-k finetuning choose the same best; then it trains two more epochs
    assert result.best.counts == first.best.counts
    assert result.best.finetuned_val_accuracy == first.best.finetuned_val_accuracy
    assert len(result.final_history["val_accuracy"]) == 2  # type: ignore[index]
    # the model returned is the one finetuned further: its validation accuracy is the one reported
    val = list(digits_supernet.splits.val_loader(64))
    assert evaluate_accuracy(result.model, val).top1 == pytest.approx(result.final_val_accuracy)
    changed = [not torch.equal(a, b) for a, b in zip(result.model.state_dict().values(),
                                                    first.model.state_dict().values(), strict=True)]
    assert any(changed)
    assert result.summary()["final_val_accuracy"] == result.final_val_accuracy


def test_bad_settings_are_user_errors() -> None:
    with pytest.raises(AutoPruneError, match="Did you mean 'uniform'"):
        SamplingConfig(strategy="unifrom")
    with pytest.raises(AutoPruneError, match="top_k=5"):
        SamplingConfig(samples=3, top_k=5)
    with pytest.raises(AutoPruneError, match="final_epochs=-1"):
        SamplingConfig(final_epochs=-1)


def test_same_seed_same_candidates(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    space = digits_supernet.space
    probs = choice_probabilities(space)
    first = draw_candidates(space, probs, 8, np.random.default_rng(3))
    assert first == draw_candidates(space, probs, 8, np.random.default_rng(3))
    assert first != draw_candidates(space, probs, 8, np.random.default_rng(4))


def test_the_draws_are_the_sampling_searchers(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    """The pipeline scores the ``sampling`` searcher's proposals through ``run_search``: distinct seeded draws, the
    uniform candidate in the last place when the draws missed it."""
    space = digits_supernet.space
    searcher = make_searcher("sampling", space, seed=3, include_uniform=True)
    result = run_search(searcher, digits_supernet.evaluator(), SearchConfig(trials=5), progress=False)
    drawn = draw_candidates(space, choice_probabilities(space), 5, np.random.default_rng(3))
    if space.uniform(1.0) not in drawn:
        drawn = [*drawn[:4], space.uniform(1.0)]
    assert [t.counts for t in result.trials] == drawn
    assert [t.info["uniform"] for t in result.trials] == [c == space.uniform(1.0) for c in drawn]
    with pytest.raises(AutoPruneError, match="temperature"):
        make_searcher("sampling", space, temperature=0)
