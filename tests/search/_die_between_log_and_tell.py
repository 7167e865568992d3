"""A search process that dies between logging a trial and telling the study (run as a script by the tests).

Usage: python _die_between_log_and_tell.py STORAGE OUT_DIR TOTAL DIE_AT RESUME

Runs the ``tpe`` searcher for TOTAL trials over a cheap synthetic evaluator (see ``_optuna_worker.py``). With
DIE_AT >= 0 the process ends with ``os._exit(9)`` (no cleanup, as under SIGKILL) when the runner tells the
searcher about trial DIE_AT, which is then in ``trials.jsonl`` but still running in the study. RESUME=1
continues the run folder. Prints ``{"trials": ..., "evaluations": ...}``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from _optuna_worker import Synthetic

from autoprune.engine.structure import ModelStructure
from autoprune.models import build_model
from autoprune.pipelines.oneshot import resolve_space
from autoprune.search import SearchConfig, Trial, make_searcher, run_search


def main() -> None:
    storage, out, total, die_at, resume = sys.argv[1:6]
    torch.set_num_threads(1)
    model = build_model("resnet20", num_classes=10, in_channels=1)
    space = resolve_space(ModelStructure(model, (1, 1, 8, 8)), "resnet20", None, 0.5)
    searcher = make_searcher("tpe", space, seed=0, storage=storage, study_name="s", n_startup_trials=4)
    tell = searcher.tell

    def tell_or_die(trial: Trial) -> None:
        if trial.number == int(die_at):
            os._exit(9)
        tell(trial)

    searcher.tell = tell_or_die  # type: ignore[method-assign]
    result = run_search(searcher, Synthetic(space), SearchConfig(trials=int(total)), out=Path(out),
                        resume=resume == "1", progress=False)  # fmt: skip
    print(json.dumps({"trials": len(result.trials), "evaluations": result.evaluations}))


if __name__ == "__main__":
    main()
