"""Channel gates: activate a sub-network of shared weights by masking output channels with hooks.

A gate multiplies the output of every layer that a group prunes on its output side (convs, linears,
BatchNorms, GroupNorms) by a 0/1 channel mask. Zeroed channels then contribute nothing downstream, exactly
as if they had been removed: the masked supernet and the physically extracted sub-network compute the same
function (tested). Shared weights are never modified, and masked channels get zero gradients.

Not under a normalisation over channels (GroupNorm, LayerNorm): there a masked channel still enters the
mean and variance of the channels kept with it, which the extracted sub-network no longer sees, so the
supernet's scores of such candidates are approximate. :class:`ChannelGates` warns
(:class:`ApproximateGatesWarning`, naming the layer) when a gated group passes through one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from autoprune.engine.structure import ModelStructure

_GATED = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.GroupNorm)
_CHANNEL_NORMS = (nn.GroupNorm, nn.LayerNorm)


class ApproximateGatesWarning(UserWarning):
    """A gated group passes through a normalisation over channels: masked and extracted models differ."""


class ChannelGates:
    """Forward hooks that apply per-group channel masks to a model's layers.

    Args:
        structure: The model's groups (their Torch-Pruning groups give member/root index maps).
    """

    def __init__(self, structure: ModelStructure) -> None:
        self.structure = structure
        # per gated module: list of (group index, member channel idxs, root channel idxs)
        self._maps: dict[nn.Module, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
        self._width: dict[nn.Module, int] = {}
        for gi, group in enumerate(structure.groups):
            for item in group.tp_group:
                module = item.dep.target.module
                if not isinstance(module, _GATED) or not structure.dg.is_out_channel_pruning_fn(item.dep.handler):
                    continue
                if any(r is None for r in item.root_idxs):
                    continue
                idxs = torch.tensor(list(item.idxs), dtype=torch.long)
                roots = torch.tensor(list(item.root_idxs), dtype=torch.long)
                self._maps.setdefault(module, []).append((gi, idxs, roots))
                self._width[module] = _out_width(module)
        self._masks: dict[nn.Module, torch.Tensor] = {}
        # the masks on the device and in the dtype of the outputs they multiply, moved there in one copy
        self._placed: dict[tuple[torch.device, torch.dtype], dict[nn.Module, torch.Tensor]] = {}
        self._handles: list[RemovableHandle] = [m.register_forward_hook(self._hook) for m in self._maps]
        _warn_channel_norms(structure)

    def set(self, kept: Mapping[str, torch.Tensor] | None) -> None:
        """Activate channels: ``kept[group] `` is a bool vector over the group's root channels.

        ``None`` (or a group missing from ``kept``) means the whole group is active.
        """
        self._masks.clear()
        self._placed.clear()
        if not kept:
            return
        groups = self.structure.groups
        for module, maps in self._maps.items():
            mask: torch.Tensor | None = None
            for gi, idxs, roots in maps:
                keep = kept.get(groups[gi].name)
                if keep is None:
                    continue
                if mask is None:
                    mask = torch.ones(self._width[module], dtype=torch.bool)
                mask[idxs] = keep[roots]
            if mask is not None and not bool(mask.all()):
                self._masks[module] = mask

    def _hook(self, module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        if module not in self._masks:
            return output
        m = self._placed_masks(output.device, output.dtype)[module]
        if isinstance(module, nn.Linear):
            return output * m
        return output * m.view(1, -1, *([1] * (output.dim() - 2)))

    def _placed_masks(self, device: torch.device, dtype: torch.dtype) -> dict[nn.Module, torch.Tensor]:
        """All active masks on ``device`` in ``dtype``: one host-to-device copy per sub-network, not per layer
        (a copy from host memory waits for the GPU, so one per layer would serialise every forward pass)."""
        placed = self._placed.get((device, dtype))
        if placed is None:
            modules = list(self._masks)
            flat = torch.cat([self._masks[m] for m in modules]).to(device=device, dtype=dtype)
            placed = dict(zip(modules, flat.split([self._masks[m].numel() for m in modules]), strict=True))
            self._placed[(device, dtype)] = placed
        return placed

    @contextmanager
    def detached(self) -> Iterator[None]:
        """Temporarily take the hooks off (to deep-copy the model without them); masks are kept."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        try:
            yield
        finally:
            self._handles = [m.register_forward_hook(self._hook) for m in self._maps]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._masks.clear()
        self._placed.clear()


def _warn_channel_norms(structure: ModelStructure) -> None:
    """Warn once, naming a layer, if any group passes through a GroupNorm or LayerNorm."""
    modules = dict(structure.model.named_modules())
    found = [
        (m.name, g.name) for g in structure.groups for m in g.members
        if isinstance(modules.get(m.name), _CHANNEL_NORMS)
    ]
    if found:
        layer, group = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        warnings.warn(
            f"supernet scores are approximate: group {group!r} passes through {type(modules[layer]).__name__} "
            f"{layer!r}{more}, which normalises over channels, so a masked channel still changes the statistics "
            "of the kept ones and the masked supernet differs from the extracted sub-network; evaluate the "
            "extracted winner to know its accuracy, or exclude that group from the search space",
            ApproximateGatesWarning,
            stacklevel=3,
        )


def _out_width(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    assert isinstance(module, nn.modules.batchnorm._BatchNorm)
    return module.num_features
