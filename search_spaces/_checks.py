"""Small validators shared by the space and its loader: every failure is an :class:`AutoPruneError`."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import Any

from autoprune.errors import AutoPruneError


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened so a huge or recursive value does not flood the message."""
    try:
        text = repr(value)
    except Exception:  # a user object with a broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def suggest(name: object, valid: Iterable[str]) -> str:
    """A " Did you mean ...?" hint for ``name`` among ``valid`` (empty if nothing is close)."""
    close = difflib.get_close_matches(str(name), list(valid), n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def number(value: Any, what: str) -> float:
    """``value`` as a finite float; strings, booleans, lists, None, NaN and infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = ""
        if isinstance(value, str):
            hint = " (write the number without quotes; YAML reads exponents such as 1e-3 as text, write 0.001)"
        raise AutoPruneError(f"{what} must be a number, got {show(value)} ({type(value).__name__}){hint}")
    try:
        result = float(value)
    except (OverflowError, ValueError, TypeError):
        raise AutoPruneError(f"{what}={show(value)} is not a usable number (too large)") from None
    if not math.isfinite(result):
        raise AutoPruneError(f"{what}={show(value)} must be a finite number")
    return result


def ratio(value: Any, what: str, meaning: str = "the fraction of channels to keep") -> float:
    """A keep ratio in (0, 1]."""
    result = number(value, what)
    if not 0.0 < result <= 1.0:
        raise AutoPruneError(f"{what}={show(value)} must be in (0, 1]: it is {meaning}")
    return result


def integer(value: Any, what: str, minimum: int = 1) -> int:
    """An integer of at least ``minimum`` (floats such as 4.0 and booleans are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise AutoPruneError(f"{what} must be an integer >= {minimum}, got {show(value)} ({type(value).__name__})")
    result = int(value)
    if result < minimum:
        raise AutoPruneError(f"{what}={result} must be an integer >= {minimum}")
    return result
