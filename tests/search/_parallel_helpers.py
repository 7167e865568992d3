"""Picklable evaluator factories for the parallel-episode tests (imported by their worker processes too).

Not collected by pytest. The tests put this folder on ``sys.path`` before they start a pool: spawned workers
get the parent's ``sys.path`` and import this module by its plain name to unpickle the factories.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from autoprune.engine.structure import ModelStructure
from autoprune.evaluate import EvalResult, Evaluator, EvaluatorStats
from autoprune.models import build_model
from autoprune.pipelines.oneshot import resolve_space
from autoprune.search_spaces import SearchSpace


def tiny_space() -> SearchSpace:
    """The bundled resnet20 space at 50% MACs over 8x8 grayscale inputs (no data, no training)."""
    model = build_model("resnet20", num_classes=10, in_channels=1)
    return resolve_space(ModelStructure(model, (1, 1, 8, 8)), "resnet20", None, 0.5)


class Jittery(Evaluator):
    """A smooth synthetic score of the keep ratios after a random sleep (so workers finish out of order).

    ``seconds`` of each result is the wall clock when it finished and ``params`` the process's torch threads,
    so that the tests can see the order in which workers finished and the threads each ran.
    """

    max_fidelity = 2

    def __init__(self, space: SearchSpace, max_sleep_s: float, fail_every: int, started: str | None,
                 barrier: int = 0, ignore_sigterm: bool = False) -> None:
        self.space, self.max_sleep_s, self.fail_every, self.started = space, max_sleep_s, fail_every, started
        self.barrier = barrier
        if ignore_sigterm:  # a worker stuck where SIGTERM does not reach (e.g. inside a C extension)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._stats = EvaluatorStats()
        self._random = random.Random(os.getpid() ^ time.time_ns())  # timing differs from run to run

    @property
    def stats(self) -> EvaluatorStats:
        return self._stats

    def evaluate(self, counts: Mapping[str, int], fidelity: int | None = None) -> EvalResult:
        if self.started is not None:
            Path(self.started, str(os.getpid())).touch()
            deadline = time.monotonic() + 120
            while len(os.listdir(self.started)) < self.barrier and time.monotonic() < deadline:
                time.sleep(0.01)
        time.sleep(self._random.uniform(0.0, self.max_sleep_s))
        ratios = list(self.space.ratios(counts).values())
        if self.fail_every and sum(counts.values()) % self.fail_every == 0:
            raise RuntimeError("injected evaluation failure")
        accuracy = sum(r * (1 + i % 3) for i, r in enumerate(ratios)) / (2 * len(ratios))
        macs = self.space.structure.predict_macs(dict(counts))
        fidelity = fidelity or self.max_fidelity
        return EvalResult(dict(counts), accuracy, 1 - accuracy, macs, macs / self.space.structure.dense_macs,
                          torch.get_num_threads(), None, fidelity, 64 * fidelity, time.time(), False)  # fmt: skip


@dataclass(frozen=True)
class JitteryFactory:
    """Builds a :class:`Jittery` evaluator over :func:`tiny_space`.

    ``max_sleep_s``: the longest random sleep; ``fail_every``: candidates whose counts sum to a multiple of it
    fail; ``started``: a folder where each evaluation, as it starts, touches a file named by its process id;
    ``barrier``: evaluations wait (up to 2 minutes) until that many processes have touched ``started``, so
    that on a loaded machine one worker cannot run every trial before the other has imported torch;
    ``ignore_sigterm``: the worker process ignores SIGTERM (only SIGKILL ends it).
    """

    max_sleep_s: float = 0.1
    fail_every: int = 0
    started: str | None = None
    barrier: int = 0
    ignore_sigterm: bool = False

    def __call__(self) -> Jittery:
        return Jittery(tiny_space(), self.max_sleep_s, self.fail_every, self.started, self.barrier,
                       self.ignore_sigterm)


@dataclass(frozen=True)
class BrokenFactory:
    """A factory whose evaluator cannot be built (a worker that fails to start)."""

    def __call__(self) -> Evaluator:
        raise FileNotFoundError("no such supernet: /nonexistent/supernet.pt")
