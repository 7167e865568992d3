"""Per-layer latency lookup tables: measured latency budgets, the way NetAdapt and AMC predict them.

Timing every candidate of a search is far too slow, and MACs hide what a device actually does (a narrow
layer at high resolution may cost more than its MACs say; odd widths defeat vectorized kernels). A
:class:`LatencyTable` instead times each conv/linear layer once at every width it can take in the search
space, on this machine, and predicts a sub-network's latency as the sum of its layers' entries plus a
constant overhead for everything else (normalization, activations, pooling, the framework).

A table is measured in one of two forms: ``eager`` (the model as it is) or ``deploy`` (the form
:func:`~autoprune.engine.deploy.optimize_for_inference` gives: BatchNorm folded into the convolutions,
channels-last memory), so that a latency budget is met in the form the model ships in.

Widths follow :meth:`ModelStructure.predict_macs`'s arithmetic: a layer keeps
``round(out_channels * (1 - sum(share * (1 - count / channels))))`` output channels over the groups that cut
them, and likewise for its inputs; a depthwise conv keeps as many inputs (and groups) as outputs.
"""

from __future__ import annotations

import json
import math
import numbers
import statistics
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune.engine.deploy import check_form, in_form
from autoprune.engine.plan import write_json_atomic
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError, CheckpointError
from autoprune.metrics.latency import measure_latency, num_threads

__all__ = ["LatencyTable", "build_latency_table", "layer_widths", "reachable_shapes"]

TABLE_VERSION = 1
Shape = tuple[int, int]  # (in_channels_kept, out_channels_kept)
_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


@dataclass
class LatencyTable:
    """Predicts a sub-network's latency as the sum of its conv/linear layers' measured latencies at their
    pruned widths plus a constant overhead (everything else: BN, activations, pooling, framework), measured
    on this machine.

    Attributes:
        batch_size: Batch size the entries were measured at.
        threads: CPU threads the entries were measured with.
        device: Device of the measurements (``"cpu"``, ``"cuda:0"``).
        entries: Per conv/linear layer name, ``{(in_channels_kept, out_channels_kept): ms}`` (a layer called
            several times in one forward pass holds the sum of its calls).
        overhead_ms: Measured dense latency minus the sum of the dense entries; may be negative where timing
            layers one by one costs more than running them in the model.
        form: ``eager`` or ``deploy`` (BatchNorm folded, channels-last; see the module docstring).
    """

    batch_size: int
    threads: int
    device: str
    entries: dict[str, dict[Shape, float]]
    overhead_ms: float
    form: str = "eager"

    def predict(self, structure: ModelStructure, counts: Mapping[str, int]) -> float:
        """Predicted latency in milliseconds of ``structure``'s model keeping ``counts[group]`` channels.

        Args:
            structure: The model's groups (the one the table was built for).
            counts: Kept channels per group; groups not in ``counts`` stay whole.

        Raises:
            AutoPruneError: an unknown group, or a layer width the table has no entry for (with the fix:
                rebuild the table with choices that include these counts).
        """
        total = self.overhead_ms
        for name, shape in layer_widths(structure, counts).items():
            layer = self.entries.get(name)
            if layer is None:
                raise AutoPruneError(
                    f"the latency table has no entries for layer {name!r}: it was built for another model; "
                    "build one for this model with build_latency_table(structure, choices)"
                )
            ms = layer.get(shape)
            if ms is None:
                raise AutoPruneError(
                    f"the latency table has no entry for layer {name!r} with (in, out) = {shape} channels: it was "
                    f"built for other choices (it has {len(layer)} widths of this layer). Rebuild it with "
                    "build_latency_table(structure, choices) where choices include these counts"
                )
            total += ms
        return total

    def missing(self, structure: ModelStructure, choices: Mapping[str, Sequence[int]]) -> list[tuple[str, Shape]]:
        """The ``(layer, (in, out))`` widths reachable with ``choices`` that the table has no entry for."""
        return [
            (name, shape)
            for name, shapes in reachable_shapes(structure, choices).items()
            for shape in sorted(shapes)
            if shape not in self.entries.get(name, {})
        ]

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (width keys written as ``"in,out"``)."""
        return {
            "table_version": TABLE_VERSION,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "device": self.device,
            "form": self.form,
            "overhead_ms": self.overhead_ms,
            "entries": {
                name: {f"{i},{o}": ms for (i, o), ms in sorted(layer.items())} for name, layer in self.entries.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyTable:
        """Rebuild a table written by :meth:`to_dict`.

        Raises:
            CheckpointError: another version, or a malformed mapping.
        """
        if not isinstance(data, Mapping) or data.get("table_version") != TABLE_VERSION:
            version = data.get("table_version") if isinstance(data, Mapping) else None
            raise CheckpointError(f"latency table version {version!r} is not supported (expected {TABLE_VERSION})")
        try:
            entries = {
                str(name): {_parse_shape(key): float(ms) for key, ms in layer.items()}
                for name, layer in data["entries"].items()
            }
            return cls(
                batch_size=int(data["batch_size"]),
                threads=int(data["threads"]),
                device=str(data["device"]),
                entries=entries,
                overhead_ms=float(data["overhead_ms"]),
                form=check_form(data.get("form", "eager")),  # tables written before forms existed: eager
            )
        except AutoPruneError as exc:
            raise CheckpointError(f"malformed latency table: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"malformed latency table: {type(exc).__name__}: {exc}") from None

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON atomically."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table written by :meth:`save`.

        Raises:
            CheckpointError: missing, truncated or malformed file (naming it).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"latency table file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"latency table file {path} is corrupt: {exc}") from None
        try:
            return cls.from_dict(data)
        except CheckpointError as exc:
            raise CheckpointError(f"latency table file {path}: {exc}") from None


def build_latency_table(
    structure: ModelStructure,
    choices: Mapping[str, Sequence[int]],
    *,
    batch_size: int = 1,
    threads: int | None = None,
    repeats: int = 20,
    warmup: int = 3,
    form: str = "eager",
) -> LatencyTable:
    """Time every conv/linear layer of ``structure``'s model at every width ``choices`` can give it.

    Identical layer shapes (same type, kernel, stride, padding, dilation, grouping, bias, input size and
    widths) are measured once, so repeated blocks cost one measurement. The dense model is timed three
    times (before, midway through and after the layers) and the median kept: the overhead offsets every
    prediction, so one load spike there would shift them all.

    Args:
        structure: The model's groups; the model is run once (eval, no grad) to record input sizes.
        choices: Allowed kept counts per group (e.g. ``space.choices``); other groups stay whole.
        batch_size: Batch size of the timed passes.
        threads: CPU threads (``None``: torch's current setting).
        repeats: Timed passes per layer shape (the median is kept) and per timing of the dense model.
        warmup: Untimed passes before each measurement.
        form: ``eager``: layers and dense model as they are. ``deploy``: the dense model in deploy form
            (:func:`~autoprune.engine.deploy.optimize_for_inference`), each layer as it is there (with the
            bias folded BatchNorm gives it) in channels-last memory, fed channels-last input.

    Returns:
        The table, with the overhead measured on the dense model under the same conditions.

    Raises:
        AutoPruneError: unknown group names, counts outside ``[1, channels]``, or an unknown form.
    """
    timed = in_form(structure.model, form)
    deploy = form == "deploy"
    reachable = reachable_shapes(structure, choices)
    inputs = _input_shapes(structure)
    folded = dict(timed.named_modules())  # the deploy form keeps the layers' names (torch.fx)
    modules = {name: folded.get(name, module) for name, module in structure.model.named_modules()}
    device = _device_of(structure.model)
    cache: dict[tuple[Any, ...], float] = {}
    entries: dict[str, dict[Shape, float]] = {}
    dense: list[float] = []
    midway = len(reachable) // 2

    def time_dense() -> None:
        latency = measure_latency(timed, structure.input_shape, batch_size=batch_size, warmup=warmup, repeats=repeats)
        dense.append(latency.median_ms)

    with num_threads(threads) as used_threads:
        time_dense()
        for index, (name, shapes) in enumerate(reachable.items()):
            if index == midway:
                time_dense()
            module = modules[name]
            entries[name] = {}
            for shape in sorted(shapes):
                total = 0.0
                for input_shape in inputs[name]:
                    key = _layer_key(module, input_shape, shape)
                    if key not in cache:
                        layer, x_shape = _standalone(module, input_shape, shape, device)
                        if deploy:
                            layer = layer.to(memory_format=torch.channels_last)
                        cache[key] = measure_latency(
                            layer, x_shape, batch_size=batch_size, warmup=warmup, repeats=repeats, channels_last=deploy
                        ).median_ms
                    total += cache[key]
                entries[name][shape] = total
        time_dense()
    dense_entries = sum(entries[name][shape] for name, shape in layer_widths(structure, {}).items())
    overhead = statistics.median(dense) - dense_entries
    return LatencyTable(
        batch_size=batch_size, threads=used_threads, device=str(device), entries=entries, overhead_ms=overhead,
        form=form,
    )  # fmt: skip


def reachable_shapes(structure: ModelStructure, choices: Mapping[str, Sequence[int]]) -> dict[str, set[Shape]]:
    """Per conv/linear layer, every ``(in, out)`` kept width it takes when each group takes any of its choices.

    Raises:
        AutoPruneError: unknown group names or counts outside ``[1, channels]``.
    """
    for name in choices:
        structure.group(name)  # an unknown name raises, listing the valid ones
    options: list[list[float]] = []  # per group, the removed fraction (1 - count / channels) of each choice
    for g in structure.groups:
        counts = _check_counts(structure, g.name, choices[g.name]) if g.name in choices else [g.channels]
        options.append(sorted({1.0 - c / g.channels for c in counts}))
    result: dict[str, set[Shape]] = {}
    for name, layer in _layers(structure).items():
        # (removed share of inputs, removed share of outputs) over the groups involved, summed in the same
        # order as layer_widths so both give bit-identical widths; merged as we go, so the set stays small
        removed: set[tuple[float, float]] = {(0.0, 0.0)}
        for gi, w_in, w_out in layer.terms:
            removed = {(a + w_in * r, b + w_out * r) for a, b in removed for r in options[gi]}
        result[name] = {layer.shape(1.0 - a, 1.0 - b) for a, b in removed}
    return result


def layer_widths(structure: ModelStructure, counts: Mapping[str, int]) -> dict[str, Shape]:
    """``(in, out)`` kept channels of every conv/linear layer when each group keeps ``counts[group]`` channels.

    Groups not in ``counts`` stay whole. Same arithmetic as :meth:`ModelStructure.predict_macs`.

    Raises:
        AutoPruneError: an unknown group name (with the valid ones).
    """
    fractions = structure._fractions(counts)
    shapes = {}
    for name, layer in _layers(structure).items():
        a = b = 0.0
        for gi, w_in, w_out in layer.terms:
            r = 1.0 - fractions[gi]
            a, b = a + w_in * r, b + w_out * r
        shapes[name] = layer.shape(1.0 - a, 1.0 - b)
    return shapes


# ---------------------------------------------------------------------- widths
def _check_counts(structure: ModelStructure, name: str, counts: Iterable[int]) -> list[int]:
    channels = structure.group(name).channels
    values = list(counts)
    bad = [c for c in values if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 1 <= c <= channels]
    if bad or not values:
        raise AutoPruneError(
            f"choices of group {name!r} must be a non-empty list of kept counts in [1, {channels}], got {values!r}"
        )
    return [int(c) for c in values]


@dataclass(frozen=True)
class _Layer:
    """A conv/linear layer's dense widths and the groups that cut it: ``(group index, in share, out share)``."""

    in_total: int
    out_total: int
    depthwise: bool
    terms: tuple[tuple[int, float, float], ...]

    def shape(self, in_keep: float, out_keep: float) -> Shape:
        out = max(1, round(self.out_total * out_keep))
        if self.depthwise:  # its inputs go with its outputs, one channel per group
            return out, out
        return max(1, round(self.in_total * in_keep)), out


_LAYERS: weakref.WeakKeyDictionary[ModelStructure, dict[str, _Layer]] = weakref.WeakKeyDictionary()


def _layers(structure: ModelStructure) -> dict[str, _Layer]:
    """Every conv/linear layer of ``structure``, cached per structure (predict runs often in a search)."""
    if structure not in _LAYERS:
        modules = dict(structure.model.named_modules())
        layers = {}
        for name in structure.costs:
            module = modules[name]
            if isinstance(module, nn.Linear):
                n_in, n_out, depthwise = module.in_features, module.out_features, False
            else:
                assert isinstance(module, nn.modules.conv._ConvNd)
                n_in, n_out = module.in_channels, module.out_channels
                depthwise = name in structure._depthwise and n_in == n_out
            outs = dict(structure._out_of.get(name, ()))
            ins = dict(structure._in_of.get(name, ()))
            terms = tuple((gi, ins.get(gi, 0.0), outs.get(gi, 0.0)) for gi in sorted(set(outs) | set(ins)))
            layers[name] = _Layer(n_in, n_out, depthwise, terms)
        _LAYERS[structure] = layers
    return _LAYERS[structure]


# ---------------------------------------------------------------------- measuring one layer
def _input_shapes(structure: ModelStructure) -> dict[str, list[tuple[int, ...]]]:
    """The input shape of every call of every conv/linear layer in one dense forward pass (batch 1)."""
    shapes: dict[str, list[tuple[int, ...]]] = {name: [] for name in structure.costs}
    modules = dict(structure.model.named_modules())
    handles = []
    for name in structure.costs:

        def hook(_module: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            shapes[name].append(tuple(args[0].shape))

        handles.append(modules[name].register_forward_pre_hook(hook))
    model = structure.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(structure.input_shape, device=_device_of(model)))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return shapes


def _layer_key(module: nn.Module, input_shape: tuple[int, ...], shape: Shape) -> tuple[Any, ...]:
    spatial = tuple(input_shape[2:]) if isinstance(module, nn.modules.conv._ConvNd) else tuple(input_shape[1:-1])
    has_bias = getattr(module, "bias", None) is not None
    if isinstance(module, nn.Linear):
        return ("linear", spatial, has_bias, shape)
    assert isinstance(module, nn.modules.conv._ConvNd)
    return (
        f"conv{len(module.kernel_size)}d",
        module.kernel_size,
        module.stride,
        module.padding,
        module.dilation,
        module.padding_mode,
        _groups_kind(module),
        has_bias,
        spatial,
        shape,
    )


def _groups_kind(module: nn.modules.conv._ConvNd) -> Any:
    if module.groups == 1:
        return "dense"
    if module.groups == module.in_channels == module.out_channels:
        return "depthwise"
    return ("grouped", module.groups)


def _standalone(
    module: nn.Module, input_shape: tuple[int, ...], shape: Shape, device: torch.device
) -> tuple[nn.Module, tuple[int, ...]]:
    """A fresh layer like ``module`` but ``shape = (in, out)`` channels wide, and its input shape."""
    n_in, n_out = shape
    has_bias = getattr(module, "bias", None) is not None
    if isinstance(module, nn.Linear):
        return nn.Linear(n_in, n_out, bias=has_bias, device=device), (1, *input_shape[1:-1], n_in)
    assert isinstance(module, nn.modules.conv._ConvNd)
    kind = _groups_kind(module)
    if kind == "depthwise":
        groups = n_out
    elif kind == "dense":
        groups = 1
    else:  # grouped: kept counts are multiples of the blocks (group_step); gcd only guards odd hand-made choices
        groups = math.gcd(module.groups, n_in, n_out)
    conv_type: Any = _CONVS[len(module.kernel_size)]  # typeshed wants ints; the module's tuples are fine
    conv = conv_type(
        n_in,
        n_out,
        module.kernel_size,
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        groups=groups,
        bias=has_bias,
        padding_mode=module.padding_mode,
        device=device,
    )
    return conv, (1, n_in, *input_shape[2:])


def _parse_shape(key: str) -> Shape:
    left, right = str(key).split(",")
    return int(left), int(right)


def _device_of(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")

