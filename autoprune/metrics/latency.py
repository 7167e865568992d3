"""Real latency on the current device: warm-up, then the median of repeated timed runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from autoprune._device import model_device


@dataclass(frozen=True)
class Latency:
    """A latency measurement and the conditions it was taken under."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    batch_size: int
    threads: int
    device: str
    repeats: int
    warmup: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Temporarily set torch's intra-op thread count (``None`` keeps the current one)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch_size: int = 1,
    warmup: int = 10,
    repeats: int = 30,
    threads: int | None = None,
    min_time_s: float = 0.0,
    channels_last: bool = False,
) -> Latency:
    """Time forward passes of ``model`` in eval mode on random input.

    Args:
        model: The model; measured on the device of its parameters.
        input_shape: ``(N, C, H, W)``; N is replaced by ``batch_size``.
        batch_size: Batch size of the timed forward pass.
        warmup: Untimed passes first (allocator, caches, lazy init).
        repeats: Timed passes; the median is reported.
        threads: CPU threads for the measurement (``None``: torch's current setting).
        min_time_s: Keep repeating until this much time was spent timing (for very fast models).
        channels_last: Feed a 4-d input in channels-last memory format (as the layers of a model in deploy
            form see it; see :func:`autoprune.optimize_for_inference`).

    Returns:
        The median, 10th and 90th percentile in milliseconds and the conditions.
    """
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"batch_size={batch_size}, repeats={repeats} must be >= 1 and warmup={warmup} >= 0")
    device = model_device(model)
    x = torch.randn((batch_size, *input_shape[1:]), device=device)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        with num_threads(threads) as used_threads, torch.inference_mode():
            for _ in range(warmup):
                model(x)
            _sync(device)
            spent = 0.0
            while len(times) < repeats or spent < min_time_s:
                start = time.perf_counter()
                model(x)
                _sync(device)
                elapsed = time.perf_counter() - start
                times.append(elapsed * 1e3)
                spent += elapsed
    finally:
        model.train(was_training)
    times_sorted = sorted(times)
    return Latency(
        median_ms=statistics.median(times),
        p10_ms=times_sorted[int(0.1 * (len(times) - 1))],
        p90_ms=times_sorted[int(0.9 * (len(times) - 1))],
        batch_size=batch_size,
        threads=used_threads,
        device=str(device),
        repeats=len(times),
        warmup=warmup,
    )
