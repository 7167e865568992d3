"""What the searcher tests share: one cached evaluator per module, and an evaluator wrapper that records calls."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from autoprune.evaluate import EvalResult, Evaluator, EvaluatorStats


class Recording(Evaluator):
    """Wraps an evaluator: records every (candidate, fidelity) it is asked to score.

    Args:
        inner: The evaluator that scores.
        fail_on: 0-based call numbers that raise instead (a failed evaluation).
        nan_on: 0-based call numbers whose loss comes back NaN (a non-finite score).
    """

    def __init__(self, inner: Evaluator, fail_on: set[int] | None = None, nan_on: set[int] | None = None) -> None:
        self.inner = inner
        self.max_fidelity = inner.max_fidelity
        self.calls: list[tuple[dict[str, int], int | None]] = []
        self.fail_on = fail_on or set()
        self.nan_on = nan_on or set()

    @property
    def stats(self) -> EvaluatorStats:
        return self.inner.stats

    @property
    def candidates(self) -> list[dict[str, int]]:
        """The candidates of the calls, in order."""
        return [counts for counts, _ in self.calls]

    def evaluate(self, counts: Mapping[str, int], fidelity: int | None = None) -> EvalResult:
        call = len(self.calls)
        self.calls.append((dict(counts), fidelity))
        if call in self.fail_on:
            raise RuntimeError("injected evaluation failure")
        result = self.inner.evaluate(counts, fidelity)
        if call in self.nan_on:
            return EvalResult(**{**result.to_dict(), "loss": float("nan")})
        return result


@pytest.fixture
def recording() -> Callable[..., Recording]:
    """The :class:`Recording` wrapper: ``recording(inner, fail_on={0})``."""
    return Recording


@pytest.fixture(scope="module")
def shared(digits_supernet: Any) -> tuple[Any, Evaluator]:
    """The digits space and one cached evaluator for the module: recurring candidates cost nothing again."""
    return digits_supernet.space, digits_supernet.evaluator()
