"""A stopped sampling run continues where it stopped and returns what an uninterrupted run returns."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from autoprune.errors import AutoPruneError
from autoprune.pipelines import sampling
from autoprune.pipelines.sampling import PARTIAL_DIR, SamplingConfig, SamplingResult, run_sampling
from autoprune.training import TrainConfig

SETTINGS = {"samples": 4, "top_k": 2, "bn_batches": 2, "finetune_batches": 3, "final_epochs": 1,
            "finetune": TrainConfig(epochs=1, lr=0.01, batch_size=64)}  # fmt: skip


def _run(d: Any, out: Path, *, resume: bool = False) -> SamplingResult:
    return run_sampling(
        d.dense, d.splits.input_shape(), d.space, train_loader=d.splits.train_loader(64, seed=0),
        val_batches=d.splits.val_loader(64), calibration=d.splits.calibration_loader(64),
        config=SamplingConfig(**SETTINGS), out=out, resume=resume,  # type: ignore[arg-type]
    )  # fmt: skip


class Stop(Exception):
    """Stands for the process being killed."""


def _stop_at_call(monkeypatch: pytest.MonkeyPatch, n: int) -> list[int]:
    """Make the pipeline's ``n``-th training (1-based) stop before it trains; returns the call counter."""
    real, calls = sampling.train, [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            raise Stop
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "train", counted)
    return calls


@pytest.fixture(scope="module")
def uninterrupted(digits_supernet: Any, tmp_path_factory: pytest.TempPathFactory) -> SamplingResult:
    out = tmp_path_factory.mktemp("whole")
    result = _run(digits_supernet, out)
    assert not (out / PARTIAL_DIR).exists()  # a finished run leaves nothing partial
    return result


@pytest.fixture(scope="module")
def stopped(digits_supernet: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder stopped when the second top-k candidate was to be finetuned."""
    out = tmp_path_factory.mktemp("stopped")
    with pytest.raises(Stop), pytest.MonkeyPatch.context() as m:
        _stop_at_call(m, 2)
        _run(digits_supernet, out)
    return out


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "run"))


def test_a_stopped_run_resumes_to_the_uninterrupted_result(digits_supernet: Any, uninterrupted: SamplingResult,
                                                           stopped: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    out = _copy(stopped, tmp_path)
    assert sorted(p.name for p in (out / PARTIAL_DIR).iterdir()) == [f"candidate-{uninterrupted.top[0]}.pt"]
    calls = _stop_at_call(monkeypatch, 0)  # count only
    resumed = _run(digits_supernet, out, resume=True)
    assert calls[0] == 2  # the second candidate and the final finetuning; the first was read back
    assert resumed.top == uninterrupted.top
    assert resumed.best.index == uninterrupted.best.index
    for i in uninterrupted.top:
        assert resumed.candidates[i].finetuned_val_accuracy == uninterrupted.candidates[i].finetuned_val_accuracy
    assert resumed.final_val_accuracy == uninterrupted.final_val_accuracy
    for a, b in zip(resumed.model.state_dict().values(), uninterrupted.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the same batches in the same order: the very same weights
    assert not (out / PARTIAL_DIR).exists()


def test_a_stop_in_the_final_finetuning_keeps_every_candidate(digits_supernet: Any, uninterrupted: SamplingResult,
                                                              tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    with pytest.raises(Stop), monkeypatch.context() as m:
        _stop_at_call(m, 3)  # both candidates finetuned, then the final finetuning
        _run(digits_supernet, tmp_path)
    calls = _stop_at_call(monkeypatch, 0)
    resumed = _run(digits_supernet, tmp_path, resume=True)
    assert calls[0] == 1
    assert resumed.best.index == uninterrupted.best.index
    assert resumed.final_val_accuracy == uninterrupted.final_val_accuracy


def test_a_fresh_run_drops_an_earlier_runs_finetunings(digits_supernet: Any, stopped: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    out = _copy(stopped, tmp_path)
    _stop_at_call(monkeypatch, 1)
    with pytest.raises(Stop):  # resume=False: stopped before its first finetuning, with nothing kept
        _run(digits_supernet, out)
    assert not (out / PARTIAL_DIR).exists()


def test_a_kept_finetuning_of_another_candidate_is_refused(digits_supernet: Any, uninterrupted: SamplingResult,
                                                           stopped: Path, tmp_path: Path) -> None:  # fmt: skip
    out = _copy(stopped, tmp_path)
    first, second = uninterrupted.top[:2]
    kept = out / PARTIAL_DIR / f"candidate-{first}.pt"
    state = torch.load(kept, weights_only=True)
    torch.save({**state, "counts": dict(uninterrupted.candidates[second].counts)}, kept)  # another one's
    with pytest.raises(AutoPruneError, match=f"candidate-{first}.pt holds another candidate.s finetuning.*--overwrite"):
        _run(digits_supernet, out, resume=True)
