"""Per-layer latency lookup tables: measured latency budgets, the way NetAdapt and AMC predict them.

Timing every candidate of a search is far too slow, and MACs hide what a device actually does (a narrow
layer at high resolution may cost more than its MACs say; odd widths defeat vectorized kernels). A
:class:`LatencyTable` instead times each conv/linear layer once at every width it can take in the search
space, on this machine, and predicts a sub-network's latency as the sum of its layers' entries plus a
constant overhead for everything else (normalization, activations, pooling, the framework).

A table is measured in one of two forms: ``eager`` (the model as it is) or ``deploy`` (the form
:func:`~autoprune.engine.deploy.optimize_for_inference` gives: BatchNorm folded into the convolutions,
channels-last memory), so that a latency budget is met in the form the model ships in.

Standalone layer timings miss what a whole model does (elementwise work that shrinks with the widths,
layers faster or slower inside the model than alone). ``build_latency_table(..., calibrate=12)`` therefore
also times a few candidates interleaved with the dense model and fits a correction of the prediction to
them (:mod:`autoprune.engine.latency_calibration`), which the table keeps and predicts with.

This module measures tables (:func:`build_latency_table`); the table type and its file format live in
:mod:`autoprune.engine.latency_lookup`, the layer widths in :mod:`autoprune.engine.layer_widths`. All three
names are importable from here.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from autoprune._device import model_device
from autoprune.engine.deploy import in_form
from autoprune.engine.latency_calibration import calibrate_table
from autoprune.engine.latency_lookup import LatencyTable
from autoprune.engine.layer_widths import Shape, layer_widths, reachable_shapes
from autoprune.engine.structure import ModelStructure
from autoprune.metrics.latency import measure_latency, num_threads

__all__ = ["LatencyTable", "build_latency_table", "calibrate_table", "layer_widths", "reachable_shapes"]

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def build_latency_table(
    structure: ModelStructure,
    choices: Mapping[str, Sequence[int]],
    *,
    batch_size: int = 1,
    threads: int | None = None,
    repeats: int = 20,
    warmup: int = 3,
    form: str = "eager",
    calibrate: int = 0,
    seed: int = 0,
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
        calibrate: Candidates to time interleaved with the dense model and fit the table's prediction to
            (:func:`~autoprune.engine.latency_calibration.calibrate_table`); 0: none, the table predicts
            overhead plus layer sum. A dozen is enough; each costs about one dense forward pass per
            calibration round.
        seed: Seed of the calibration candidates.

    Returns:
        The table, with the overhead measured on the dense model under the same conditions (and the
        calibration, if asked).

    Raises:
        AutoPruneError: unknown group names, counts outside ``[1, channels]``, or an unknown form.
    """
    timed = in_form(structure.model, form)
    deploy = form == "deploy"
    reachable = reachable_shapes(structure, choices)
    inputs = _input_shapes(structure)
    folded = dict(timed.named_modules())  # the deploy form keeps the layers' names (torch.fx)
    modules = {name: folded.get(name, module) for name, module in structure.model.named_modules()}
    device = model_device(structure.model)
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
    table = LatencyTable(
        batch_size=batch_size, threads=used_threads, device=str(device), entries=entries, overhead_ms=overhead,
        form=form,
    )  # fmt: skip
    if calibrate:
        table = calibrate_table(table, structure, choices, candidates=calibrate, seed=seed, threads=used_threads)
    return table


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
            model(torch.zeros(structure.input_shape, device=model_device(model)))
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
