"""The fidelity benchmark's short-finetune score (benchmarks/_short_finetune.py) on the digits supernet."""

from __future__ import annotations

import copy
from collections.abc import Callable
from itertools import islice
from types import ModuleType
from typing import Any

import pytest
import torch

from autoprune.metrics import evaluate_accuracy


def test_short_finetune_score_is_repeatable_and_leaves_the_supernet_alone(
        digits_supernet: Any, benchmark_script: Callable[[str], ModuleType]) -> None:
    scorer_module = benchmark_script("_short_finetune")
    d = digits_supernet
    supernet = copy.deepcopy(d.supernet)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    batches = list(islice(d.splits.train_loader(64, seed=0), 6))
    val = list(d.splits.val_loader(64))
    calib = list(islice(d.splits.calibration_loader(64, seed=0), 2))
    scorer = scorer_module.ShortFinetuneScorer(supernet, batches, val, calib, lr=0.05)
    uniform = d.space.uniform(1.0)
    first = scorer.score(uniform).accuracy
    assert scorer.score(uniform).accuracy == first  # same batches, same seed: the same score
    after = supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the finetune trains a copy
    # the score is the finetuned copy's: without the steps (adaptive BN only) the candidate reads differently
    plain = evaluate_accuracy(supernet.extract(uniform, calibration=calib, bn_batches=len(calib)), val).top1
    assert first != plain
    assert scorer_module.ShortFinetuneScorer(supernet, batches, val, calib, lr=1e-3).score(uniform).accuracy != first
    with pytest.raises(ValueError, match="at least one training batch"):
        scorer_module.ShortFinetuneScorer(supernet, [], val, calib, lr=0.05)
