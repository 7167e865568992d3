"""Real latency on the current device, by one protocol everywhere: models interleaved in rounds.

A shared machine's speed drifts (other jobs, frequency scaling, caches): two models timed one after the
other see different machines, and their ratio mixes the models with the drift. :func:`measure_interleaved`
therefore times every model once per round, round-robin, rotating the order each round (so no model is
always first after another), after interleaved warm-up passes. Each model's latency is the median over
rounds, with the interquartile range as its noise; a ratio of two models (:func:`ratio`) is the median of
their per-round ratios, each taken within one round. :func:`measure_latency` is the one-model case.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune._device import model_device

#: What is timed: a model (run in eval mode under ``torch.inference_mode``) or any callable of the input.
Timed = nn.Module | Callable[[torch.Tensor], Any]

#: The protocol in words, for reports and benchmarks.
PROTOCOL = ("interleaved: every model once per round, round-robin with the order rotated each round, after "
            "interleaved warm-up passes; latency = median over rounds (q1, q3, iqr: quartiles over rounds); a "
            "ratio = median of the per-round ratios")


@dataclass(frozen=True)
class LatencyStats:
    """One model's latency under the interleaved protocol, and the conditions it was taken under.

    Attributes:
        median_ms: Median over rounds of the time of one forward pass, in milliseconds.
        q1_ms: First quartile over rounds.
        q3_ms: Third quartile over rounds.
        iqr_ms: ``q3_ms - q1_ms``: the measurement's noise.
        p10_ms: 10th percentile over rounds.
        p90_ms: 90th percentile over rounds.
        rounds: Timed rounds.
        repeats: Forward passes per round (a round's time is their mean).
        warmup: Untimed passes per model before the first round.
        batch_size: Batch size of the timed passes.
        threads: CPU threads (torch's intra-op setting) during the measurement.
        device: Where the model ran.
        samples_ms: Each round's time, in round order (paired with other models of the same run).
    """

    median_ms: float
    q1_ms: float
    q3_ms: float
    iqr_ms: float
    p10_ms: float
    p90_ms: float
    rounds: int
    repeats: int
    warmup: int
    batch_size: int
    threads: int
    device: str
    samples_ms: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self, *, samples: bool = False) -> dict[str, Any]:
        """The fields as a JSON-ready mapping (without the per-round samples unless asked)."""
        out = asdict(self)
        samples_ms = out.pop("samples_ms")
        if samples:
            out["samples_ms"] = list(samples_ms)
        return out


#: The name of :class:`LatencyStats` before the interleaved protocol.
Latency = LatencyStats


@dataclass(frozen=True)
class RatioStats:
    """The latency ratio of two models measured in one interleaved run: statistics of the per-round ratios."""

    median: float
    q1: float
    q3: float
    iqr: float
    rounds: int

    @property
    def noise(self) -> float:
        """Half the interquartile range: how far a ratio of this run may be off by timing noise alone."""
        return self.iqr / 2

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "noise": self.noise}


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


def _quantiles(values: Sequence[float], n: int) -> list[float]:
    if len(values) == 1:
        return [values[0]] * (n - 1)
    return statistics.quantiles(values, n=n, method="inclusive")


def _stats(samples: list[float], **conditions: Any) -> LatencyStats:
    q1, _, q3 = _quantiles(samples, 4)
    deciles = _quantiles(samples, 10)
    return LatencyStats(median_ms=statistics.median(samples), q1_ms=q1, q3_ms=q3, iqr_ms=q3 - q1,
                        p10_ms=deciles[0], p90_ms=deciles[-1], rounds=len(samples),
                        samples_ms=tuple(samples), **conditions)  # fmt: skip


def measure_interleaved(
    models: Mapping[str, Timed],
    input_shape: tuple[int, ...],
    *,
    batch_size: int = 1,
    rounds: int = 20,
    warmup: int = 3,
    repeats: int = 1,
    threads: int | None = None,
    min_time_s: float = 0.0,
    max_time_s: float | None = None,
    channels_last: bool | Collection[str] = False,
) -> dict[str, LatencyStats]:
    """Time ``models`` in one interleaved run: each once per round, the order rotated every round.

    Args:
        models: Name -> model (timed in eval mode, the input on its parameters' device) or callable of a
            CPU tensor (e.g. an ONNX Runtime session, see :func:`onnxruntime_runner`).
        input_shape: ``(N, C, H, W)``; N is replaced by ``batch_size``. Every model gets the same values.
        batch_size: Batch size of the timed passes.
        rounds: Timed rounds (at least; see ``min_time_s``).
        warmup: Untimed passes per model first, interleaved like the rounds (allocator, caches, lazy init).
        repeats: Forward passes per model and round; a round's time is their mean.
        threads: CPU threads for the measurement (``None``: torch's current setting).
        min_time_s: Keep adding rounds until the timed passes took this long in all (for very fast models).
        max_time_s: Stop after the round in which the timed passes reach this long in all, if at least 3
            rounds were timed (for slow models; ``None``: no limit). ``rounds`` in the result says how many.
        channels_last: Feed a 4-d input in channels-last memory format (as the layers of a model in deploy
            form see it): ``True`` for every model, or the names of the models that get it.

    Returns:
        Per name, its statistics over rounds; ``samples_ms`` are paired by round across the models.

    Raises:
        ValueError: no models, ``batch_size``, ``rounds`` or ``repeats`` below 1, or ``warmup`` below 0.
    """
    if not models or batch_size < 1 or rounds < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"{len(models)} models, batch_size={batch_size}, rounds={rounds} and repeats={repeats} "
                         f"must be >= 1 and warmup={warmup} >= 0")
    names = list(models)
    base = torch.randn((batch_size, *input_shape[1:]))
    devices = {n: model_device(m) if isinstance(m, nn.Module) else torch.device("cpu") for n, m in models.items()}
    inputs = {}
    for n in names:
        x = base.to(devices[n])
        if (channels_last is True or (not isinstance(channels_last, bool) and n in channels_last)) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        inputs[n] = x
    samples: dict[str, list[float]] = {n: [] for n in names}
    with ExitStack() as stack:
        for m in models.values():
            if isinstance(m, nn.Module):
                stack.callback(m.train, m.training)
                m.eval()
        used_threads = stack.enter_context(num_threads(threads))
        stack.enter_context(torch.inference_mode())
        for _ in range(warmup):
            for n in names:
                models[n](inputs[n])
        for device in set(devices.values()):
            _sync(device)
        spent, r = 0.0, 0
        while (r < rounds or spent < min_time_s) and not (max_time_s is not None and r >= 3 and spent >= max_time_s):
            shift = r % len(names)
            for n in names[shift:] + names[:shift]:
                start = time.perf_counter()
                for _ in range(repeats):
                    models[n](inputs[n])
                _sync(devices[n])
                elapsed = time.perf_counter() - start
                samples[n].append(elapsed * 1e3 / repeats)
                spent += elapsed
            r += 1
    return {n: _stats(samples[n], repeats=repeats, warmup=warmup, batch_size=batch_size, threads=used_threads,
                      device=str(devices[n])) for n in names}  # fmt: skip


def ratio(stats: Mapping[str, LatencyStats], numerator: str, denominator: str) -> RatioStats:
    """``numerator / denominator`` latency from one interleaved run: statistics of the per-round ratios.

    Raises:
        ValueError: the two were not measured in the same run (different round counts).
    """
    num, den = stats[numerator].samples_ms, stats[denominator].samples_ms
    if not num or len(num) != len(den):
        raise ValueError(f"{numerator!r} ({len(num)} rounds) and {denominator!r} ({len(den)} rounds) were not "
                         "measured in one interleaved run: measure them together with measure_interleaved")
    per_round = [a / b for a, b in zip(num, den, strict=True)]
    q1, _, q3 = _quantiles(per_round, 4)
    return RatioStats(median=statistics.median(per_round), q1=q1, q3=q3, iqr=q3 - q1, rounds=len(per_round))


def measure_latency(
    model: Timed,
    input_shape: tuple[int, ...],
    *,
    batch_size: int = 1,
    warmup: int = 10,
    repeats: int = 30,
    threads: int | None = None,
    min_time_s: float = 0.0,
    channels_last: bool = False,
) -> LatencyStats:
    """One model's latency: :func:`measure_interleaved` with one model, ``repeats`` rounds of one pass each.

    Args:
        model: The model; measured on the device of its parameters.
        input_shape: ``(N, C, H, W)``; N is replaced by ``batch_size``.
        batch_size: Batch size of the timed forward pass.
        warmup: Untimed passes first.
        repeats: Timed passes (rounds); the median is reported.
        threads: CPU threads for the measurement (``None``: torch's current setting).
        min_time_s: Keep repeating until this much time was spent timing (for very fast models).
        channels_last: Feed a 4-d input in channels-last memory format.

    Returns:
        The median, quartiles and 10th/90th percentiles in milliseconds, and the conditions.
    """
    return measure_interleaved({"model": model}, input_shape, batch_size=batch_size, rounds=repeats, warmup=warmup,
                               threads=threads, min_time_s=min_time_s, channels_last=channels_last)["model"]


def onnxruntime_runner(path: str | Path, *, threads: int | None = None) -> Callable[[torch.Tensor], Any]:
    """A callable that runs ``path`` (an ONNX model with one input) in ONNX Runtime on the CPU.

    Args:
        path: The ``.onnx`` file (a dynamic batch axis, as :func:`autoprune.engine.export.export_onnx` writes).
        threads: ONNX Runtime's intra-op threads (``None``: torch's current setting, to compare like with like).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
    options.inter_op_num_threads = 1
    # no busy-waiting between runs: spinning threads would steal the CPU from the models timed after this one
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> Any:
        return session.run(None, {name: x.numpy()})

    return run
