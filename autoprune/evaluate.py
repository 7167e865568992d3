"""The candidate evaluator: ``counts, fidelity -> accuracy, MACs, params (, latency)``, cached.

The only place that runs validation data during a search; every searcher calls it. Scoring uses the
validation split carved from the training data; the test split is never touched here.

Fidelity is the number of validation batches. Results are cached per candidate (its kept-channel
counts) *per batch*, so a repeated candidate costs nothing, and raising the fidelity of a candidate
evaluates only the batches not seen yet (what Optuna's pruners need for early stopping).
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from autoprune._types import Batch
from autoprune.engine.deploy import check_form, in_form
from autoprune.metrics import count_params, measure_latency, paired_mean_se
from autoprune.supernet.supernet import Supernet

Key = tuple[int, ...]


@dataclass(frozen=True)
class EvalResult:
    """One evaluation of one candidate.

    Attributes:
        counts: Kept channels per group (the candidate).
        accuracy: Top-1 on the first ``fidelity`` validation batches (0..1).
        loss: Mean cross-entropy on those batches.
        macs: Conv/linear MACs of the sub-network (exact, from the structure).
        macs_ratio: ``macs`` / dense MACs.
        params: Parameters of the extracted sub-network.
        latency_ms: Measured median latency (only when the evaluator measures latency).
        fidelity: Validation batches used.
        samples: Validation samples used.
        seconds: Time this call took.
        cached: True when no batch had to be evaluated.
    """

    counts: dict[str, int]
    accuracy: float
    loss: float
    macs: int
    macs_ratio: float
    params: int
    latency_ms: float | None
    fidelity: int
    samples: int
    seconds: float
    cached: bool

    @property
    def accuracy_se(self) -> float:
        """Standard error of :attr:`accuracy` on its ``samples`` (binomial)."""
        return binomial_se(self.accuracy, self.samples)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FullScore:
    """A candidate scored on every validation sample, with the per-sample record for paired comparisons.

    Attributes:
        counts: Kept channels per group.
        accuracy: Top-1 on the whole validation split.
        accuracy_se: Its standard error, ``sqrt(p (1 - p) / n)``.
        loss: Mean cross-entropy.
        loss_se: Standard error of the mean cross-entropy.
        samples: Validation samples scored.
        macs_ratio: MACs over the dense model's.
        params: Parameters of the extracted sub-network.
        bn_batches: Calibration batches its BatchNorm statistics were re-estimated on.
        correct: Per validation sample, 1 if predicted right (not serialized).
        losses: Per validation sample cross-entropy (not serialized).
    """

    counts: dict[str, int]
    accuracy: float
    accuracy_se: float
    loss: float
    loss_se: float
    samples: int
    macs_ratio: float
    params: int
    bn_batches: int
    correct: np.ndarray = field(repr=False, compare=False)
    losses: np.ndarray = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("correct", "losses")}


def paired_difference(a: FullScore, b: FullScore) -> tuple[float, float]:
    """Accuracy of ``a`` minus that of ``b`` on the same samples, and the standard error of that difference.

    Paired: the per-sample differences ``correct_a - correct_b`` share the samples' difficulty, so the
    standard error is that of their mean (often much smaller than either accuracy's own).
    """
    if a.samples != b.samples:
        raise ValueError(f"scores on {a.samples} and {b.samples} samples cannot be paired")
    return paired_mean_se(a.correct, b.correct)


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` samples."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n) if n > 0 else math.inf


@dataclass
class EvaluatorStats:
    """Counters a search reports: how many calls, how many batches computed, cache hits."""

    calls: int = 0
    cache_hits: int = 0
    batches_computed: int = 0
    extractions: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Evaluator(abc.ABC):
    """Scores candidates. Searchers only ever see this interface."""

    #: Number of validation batches of a full-fidelity evaluation.
    max_fidelity: int

    @abc.abstractmethod
    def evaluate(self, counts: Mapping[str, int], fidelity: int | None = None) -> EvalResult:
        """Score ``counts`` on the first ``fidelity`` validation batches (all if ``None``)."""

    @property
    @abc.abstractmethod
    def stats(self) -> EvaluatorStats:
        """Counters since construction."""


@dataclass
class _Entry:
    per_batch: list[tuple[int, float, int]] = field(default_factory=list)  # (correct, loss sum, samples)
    params: int = 0
    latency_ms: float | None = None


class SupernetEvaluator(Evaluator):
    """Evaluates sub-networks of a supernet: extract (shared weights) -> adaptive BN -> validate.

    Args:
        supernet: The supernet (a plain trained model wrapped in :class:`Supernet` works too: then a
            candidate is "cut from the original model").
        val_batches: Validation batches (from the training split); kept in memory.
        calibration: Batches for adaptive BatchNorm (from the training split).
        bn_batches: Calibration batches per candidate (0 disables adaptive BN).
        latency_batch_size: If set, the latency of every extracted candidate is measured at this batch size.
        latency_form: ``eager`` (the extracted model as it is) or ``deploy`` (measured after
            :func:`~autoprune.engine.deploy.optimize_for_inference`: BatchNorm folded, channels-last).
        device: Where to evaluate.
    """

    def __init__(
        self,
        supernet: Supernet,
        val_batches: Iterable[Batch],
        calibration: Iterable[Batch],
        *,
        bn_batches: int = 10,
        latency_batch_size: int | None = None,
        latency_form: str = "eager",
        device: torch.device | str = "cpu",
    ) -> None:
        self.latency_form = check_form(latency_form)
        self.supernet = supernet
        self.device = torch.device(device)
        self.val = [(x.to(self.device), y.to(self.device)) for x, y in val_batches]
        if not self.val:
            raise ValueError("the evaluator needs at least one validation batch")
        self.calibration = [(x.to(self.device), y) for x, y in islice(calibration, bn_batches)]
        if bn_batches > 0 and not self.calibration:
            raise ValueError("adaptive BN needs calibration batches: the calibration loader is empty")
        self.bn_batches = bn_batches
        self.latency_batch_size = latency_batch_size
        self.max_fidelity = len(self.val)
        self.names = supernet.group_names
        self._channels = {g.name: g.channels for g in supernet.structure.groups}
        self._cache: dict[Key, _Entry] = {}
        self._stats = EvaluatorStats()

    @property
    def stats(self) -> EvaluatorStats:
        return self._stats

    def key(self, counts: Mapping[str, int]) -> Key:
        """The cache key: kept counts of every group in a fixed order (missing groups are whole)."""
        unknown = set(counts) - set(self._channels)
        if unknown:
            self.supernet.structure.group(sorted(unknown)[0])  # raises with the valid names
        return tuple(int(counts.get(n, self._channels[n])) for n in self.names)

    def evaluate(self, counts: Mapping[str, int], fidelity: int | None = None) -> EvalResult:
        start = time.perf_counter()
        fidelity = self.max_fidelity if fidelity is None else fidelity
        if not 1 <= fidelity <= self.max_fidelity:
            raise ValueError(f"fidelity={fidelity} must be in [1, {self.max_fidelity}] validation batches")
        key = self.key(counts)
        entry = self._cache.setdefault(key, _Entry())
        have = len(entry.per_batch)
        cached = have >= fidelity
        if not cached:
            model = self._extract(dict(zip(self.names, key, strict=True)))
            if have == 0:
                entry.params = count_params(model)[0]
                if self.latency_batch_size is not None:
                    timed = in_form(model, self.latency_form)
                    entry.latency_ms = measure_latency(
                        timed, self.supernet.input_shape, batch_size=self.latency_batch_size, repeats=20
                    ).median_ms
            with torch.inference_mode():
                for x, y in self.val[have:fidelity]:
                    logits = model(x)
                    correct = int((logits.argmax(dim=1) == y).sum())
                    entry.per_batch.append((correct, float(F.cross_entropy(logits, y, reduction="sum")), y.numel()))
            self._stats.batches_computed += fidelity - have
        else:
            self._stats.cache_hits += 1
        self._stats.calls += 1
        seen = entry.per_batch[:fidelity]
        samples = sum(n for _, _, n in seen)
        full = dict(zip(self.names, key, strict=True))
        macs = self.supernet.structure.predict_macs(full)
        seconds = time.perf_counter() - start
        self._stats.seconds += seconds
        return EvalResult(
            counts=full,
            accuracy=sum(c for c, _, _ in seen) / samples,
            loss=sum(s for _, s, _ in seen) / samples,
            macs=macs,
            macs_ratio=macs / self.supernet.structure.dense_macs,
            params=entry.params,
            latency_ms=entry.latency_ms,
            fidelity=fidelity,
            samples=samples,
            seconds=seconds,
            cached=cached,
        )

    def score(self, counts: Mapping[str, int]) -> FullScore:
        """Score ``counts`` on every validation sample, keeping the per-sample record (not cached).

        Used to fix the winner after a search: the top candidates are re-scored this way, usually by an
        evaluator with a larger calibration set (``bn_batches``) than the search's.
        """
        full = dict(zip(self.names, self.key(counts), strict=True))
        model = self._extract(full)
        correct, losses = [], []
        with torch.inference_mode():
            for x, y in self.val:
                logits = model(x)
                correct.append((logits.argmax(dim=1) == y).cpu())
                losses.append(F.cross_entropy(logits, y, reduction="none").float().cpu())
        c = torch.cat(correct).numpy().astype(np.int8)
        lo = torch.cat(losses).numpy().astype(np.float64)
        n = len(c)
        accuracy = float(c.mean())
        macs = self.supernet.structure.predict_macs(full)
        return FullScore(
            counts=full, accuracy=accuracy, accuracy_se=binomial_se(accuracy, n), loss=float(lo.mean()),
            loss_se=float(lo.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf, samples=n,
            macs_ratio=macs / self.supernet.structure.dense_macs, params=count_params(model)[0],
            bn_batches=len(self.calibration), correct=c, losses=lo,
        )  # fmt: skip

    def _extract(self, counts: dict[str, int]) -> nn.Module:
        self._stats.extractions += 1
        model = self.supernet.extract(
            counts, calibration=self.calibration if self.bn_batches > 0 else None, bn_batches=self.bn_batches
        )
        return model.to(self.device).eval()
