"""The probe: prune one channel block of every group on a copy of the model and run it.

Torch-Pruning removes channels from layers, but not from the attributes a model's ``forward`` reads: the
head count and head size an attention block reshapes with (MaxViT), a window or partition size, a hidden
size kept in an attribute. A group through such a reshape is coupled correctly in the graph yet breaks
the model once pruned. So every new structure prunes a copy by one channel block per group (all groups
at once) and runs one forward pass on zeros; if that fails, the groups are tried one at a time and those
after which the model no longer runs are left out. The result is cached per architecture and input shape,
so re-tracing the same model (``apply_plan``, unpickling) does not probe again.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from autoprune._device import model_device
from autoprune.engine.removal import ChannelRemover, removal_steps

if TYPE_CHECKING:
    from autoprune.engine.structure import PrunableGroup

_CACHE: OrderedDict[tuple[Any, ...], dict[str, str]] = OrderedDict()
_CACHE_SIZE = 32


def forward_failure(model: nn.Module, input_shape: Sequence[int]) -> str | None:
    """Why one forward pass of ``model`` (eval mode) on zeros of ``input_shape`` fails (None if it runs)."""
    modes = {m: m.training for m in model.modules()}
    try:
        with torch.no_grad():
            model.eval()(torch.zeros((1, *input_shape[1:]), device=model_device(model)))
    except Exception as exc:  # the pruned model's own code
        return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    finally:
        for module, training in modes.items():
            module.training = training
    return None


def broken_groups(
    model: nn.Module,
    input_shape: Sequence[int],
    groups: Sequence[PrunableGroup],
    *,
    name_of: dict[Any, str],
    is_out: Callable[[Any], bool],
) -> dict[str, str]:
    """The groups whose pruning breaks ``model``'s forward pass, each with the failure.

    Args:
        model: The dense model (not modified: a copy is pruned).
        input_shape: The input shape it was traced with.
        groups: Its groups (with their Torch-Pruning groups).
        name_of: Module or unwrapped parameter -> its name in ``model``.
        is_out: Whether a Torch-Pruning handler removes output channels.
    """
    key = _signature(model, input_shape, groups)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return dict(_CACHE[key])
    steps = {g.name: removal_steps(g, _dropped_roots(g), name_of, is_out) for g in groups}
    steps = {name: s for name, s in steps.items() if s}
    broken: dict[str, str] = {}
    pruner = _copy_remover(model)
    for name in steps:
        pruner.apply(steps[name])
    if forward_failure(pruner.model, input_shape) is not None:
        good: list[str] = []
        pruner = _copy_remover(model)
        for name in steps:
            pruner.apply(steps[name])
            failure = forward_failure(pruner.model, input_shape)
            if failure is None:
                good.append(name)
                continue
            broken[name] = failure
            pruner = _copy_remover(model)
            for done in good:
                pruner.apply(steps[done])
    _CACHE[key] = dict(broken)
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return broken


def _signature(model: nn.Module, input_shape: Sequence[int], groups: Sequence[PrunableGroup]) -> tuple[Any, ...]:
    modules = tuple((n, type(m).__qualname__) for n, m in model.named_modules())
    params = tuple((n, tuple(p.shape)) for n, p in model.named_parameters())
    return type(model).__qualname__, tuple(input_shape[1:]), modules, params, tuple(g.name for g in groups)


def _dropped_roots(group: PrunableGroup) -> set[int]:
    """One position in every channel block, taken from the largest segment (every segment keeps one)."""
    width = group.channels // group.channel_groups
    segments = group.segments or (tuple(range(width)),)
    largest = max(segments, key=len)
    if len(largest) < 2:
        return set()
    return {largest[-1] + b * width for b in range(group.channel_groups)}


def _copy_remover(model: nn.Module) -> ChannelRemover:
    return ChannelRemover(copy.deepcopy(model))
