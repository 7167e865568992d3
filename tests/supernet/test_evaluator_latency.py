"""The supernet evaluator times candidates in the form asked for: eager, or deploy (folded, channels-last)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import autoprune.evaluate as evaluate
from autoprune.errors import AutoPruneError
from autoprune.evaluate import SupernetEvaluator


@pytest.mark.parametrize("form", ["eager", "deploy"])
def test_candidates_are_timed_in_the_requested_form(digits_supernet: Any, form: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    timed: list[nn.Module] = []
    real = evaluate.measure_latency

    def spy(model: nn.Module, shape: tuple[int, ...], **kwargs: Any) -> Any:
        timed.append(model)
        return real(model, shape, **{**kwargs, "repeats": 2})

    monkeypatch.setattr(evaluate, "measure_latency", spy)
    sn = digits_supernet
    ev = SupernetEvaluator(sn.supernet, sn.splits.val_loader(64), sn.splits.calibration_loader(64, seed=0),
                           bn_batches=1, latency_batch_size=4, latency_form=form)  # fmt: skip
    result = ev.evaluate(sn.space.uniform(1.0))
    assert result.latency_ms is not None and result.latency_ms > 0
    (model,) = timed
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]  # many input channels: formats differ
    channels_last = conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert (has_bn, channels_last) == ((True, False) if form == "eager" else (False, True))


def test_an_unknown_latency_form_is_refused(digits_supernet: Any) -> None:
    sn = digits_supernet
    with pytest.raises(AutoPruneError, match="form 'fast' is not one of eager, deploy"):
        SupernetEvaluator(sn.supernet, sn.splits.val_loader(64), [], bn_batches=0, latency_form="fast")
