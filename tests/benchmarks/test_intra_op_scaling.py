"""benchmarks/intra_op_scaling.py times whole evaluations at 1 and N threads, interleaved, and restores torch's
thread count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from autoprune.defaults import DEFAULT_HOLDOUT


def test_measure_alternates_thread_counts_and_restores_them(benchmark_script: Any, digits_supernet: Any,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "supernet.pt"
    digits_supernet.supernet.save(path, {"space": digits_supernet.space.to_dict(), "model": "resnet20"})
    module = benchmark_script("intra_op_scaling")
    set_to: list[int] = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (set_to.append(n), real(n))[1])
    before = torch.get_num_threads()
    result = module.measure(path, "resnet20", "digits", None, threads=2, rounds=2, bn_batches=1)
    # round 0 (warm-up) and round 2 run 1 then 2 threads, round 1 runs 2 then 1; then the old count is restored
    assert set_to == [1, 2, 2, 1, 1, 2, before]
    assert len(result["speedup_per_round"]) == 2 and result["median_speedup"] > 0
    assert result["ceiling_of_processes"] == pytest.approx(2 / result["median_speedup"])
    searched, _ = digits_supernet.splits.hold_out(DEFAULT_HOLDOUT)  # what a search reads: not its hold-out
    assert result["validation_samples"] == len(searched.val)
    assert "at most" in module.markdown(result)[0]
    with pytest.raises(SystemExit, match="at least 2 threads"):
        module.measure(path, "resnet20", "digits", None, threads=1, rounds=2)
