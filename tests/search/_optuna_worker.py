"""One worker process of tests/search/test_optuna_workers.py (run as a script, not collected by pytest).

Usage: python _optuna_worker.py STORAGE STUDY_NAME TOTAL OUT_DIR SEED BARRIER_DIR WORKERS

Runs :func:`run_search` with the ``tpe`` searcher on the shared study, scoring candidates with a cheap
synthetic evaluator (a smooth function of the keep ratios; 50 ms per call) so that only the study's
bookkeeping is under test. All workers wait at a file barrier first, so that they really run together.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from autoprune.engine.structure import ModelStructure
from autoprune.evaluate import EvalResult, Evaluator, EvaluatorStats
from autoprune.models import build_model
from autoprune.pipelines.oneshot import resolve_space
from autoprune.search import SearchConfig, make_searcher, run_search
from autoprune.search_spaces import SearchSpace


class Synthetic(Evaluator):
    max_fidelity = 4

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self._stats = EvaluatorStats()

    @property
    def stats(self) -> EvaluatorStats:
        return self._stats

    def evaluate(self, counts: Mapping[str, int], fidelity: int | None = None) -> EvalResult:
        time.sleep(0.05)
        fidelity = fidelity or self.max_fidelity
        ratios = list(self.space.ratios(counts).values())
        accuracy = sum(r * (1 + i % 3) for i, r in enumerate(ratios)) / (2 * len(ratios))
        macs = self.space.structure.predict_macs(dict(counts))
        return EvalResult(dict(counts), accuracy, 1 - accuracy, macs, macs / self.space.structure.dense_macs, 0,
                          None, fidelity, 64 * fidelity, 0.05, False)  # fmt: skip


def main() -> None:
    storage, study_name, total, out, seed, barrier, workers = sys.argv[1:8]
    torch.set_num_threads(1)
    model = build_model("resnet20", num_classes=10, in_channels=1)
    space = resolve_space(ModelStructure(model, (1, 1, 8, 8)), "resnet20", None, 0.5)
    searcher = make_searcher("tpe", space, seed=int(seed), storage=storage, study_name=study_name,
                             total_trials=int(total), n_startup_trials=4)  # fmt: skip
    Path(barrier, f"ready-{seed}").touch()
    deadline = time.time() + 60
    while len(list(Path(barrier).glob("ready-*"))) < int(workers) and time.time() < deadline:
        time.sleep(0.05)
    result = run_search(searcher, Synthetic(space), SearchConfig(trials=int(total)), out=Path(out), progress=False)
    print(json.dumps({"trials": len(result.trials)}))


if __name__ == "__main__":
    main()
