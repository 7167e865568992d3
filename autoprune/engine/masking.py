"""Keeping masked weights exactly zero while a masked model is finetuned.

Zeroing the weights once is not enough: gradients, momentum and weight decay move them again after the
first optimizer step. :class:`MaskEnforcer` closes every path: it zeroes the masked weights now, masks
their gradients as they are computed (tensor hooks, so gradient clipping and logging see the masked
gradients too) and re-zeroes the weights after every step of an attached optimizer (which catches
optimizer state that predates the masks, such as old momentum buffers).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from autoprune.errors import AutoPruneError


def _drop_mask(name: str, mask: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """Where ``param`` must be zero: ``~mask``, unsqueezed over trailing dims as ``apply_masks`` does."""
    keep = mask.detach().to(device=param.device).bool()
    while keep.dim() < param.dim():
        keep = keep.unsqueeze(-1)
    ok = keep.dim() == param.dim() and all(m in (1, p) for m, p in zip(keep.shape, param.shape, strict=True))
    if not ok:
        raise AutoPruneError(
            f"mask for {name!r} has shape {tuple(mask.shape)}, which does not broadcast to the parameter's "
            f"{tuple(param.shape)}; use a full-shape mask or one over the leading dims, e.g. "
            f"({param.shape[0]},) for output channels"
        )
    return ~keep


class MaskEnforcer:
    """Keeps masked weights exactly zero during training; usable as a context manager.

    On creation it zeroes the masked weights and registers gradient hooks that zero their gradients on
    every backward pass; :meth:`attach` also re-applies the masks after every step of an optimizer, so
    masked weights stay exactly 0 with momentum, weight decay or adaptive optimizers. Leaving the
    ``with`` block (or :meth:`remove`) takes all hooks away.

    Example:
        >>> with MaskEnforcer(model, plan.masks) as enforcer:  # doctest: +SKIP
        ...     enforcer.attach(optimizer)
        ...     train(model, optimizer)

    Args:
        model: The model whose parameters are masked.
        masks: Per parameter name, a boolean keep mask of the parameter's shape or broadcastable over
            its trailing dims (an ``(out,)`` channel mask from :func:`autoprune.engine.plan.channel_masks`).

    Raises:
        AutoPruneError: a mask names an unknown parameter or has a shape that does not broadcast.
    """

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        self._drops: list[tuple[nn.Parameter, torch.Tensor]] = []
        for name, mask in masks.items():
            if name not in params:
                raise AutoPruneError(
                    f"mask for unknown parameter {name!r}: the masks belong to another model "
                    f"(parameters look like {list(params)[:3]})"
                )
            self._drops.append((params[name], _drop_mask(name, mask, params[name])))
        self._handles: list[RemovableHandle] = []
        for param, drop in self._drops:
            if param.requires_grad:
                self._handles.append(param.register_hook(_grad_hook(drop)))
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the masked weights (and any gradient already stored for them) in place."""
        for param, drop in self._drops:
            d = drop.to(param.device)
            param.masked_fill_(d, 0.0)
            if param.grad is not None:
                param.grad.masked_fill_(d.to(param.grad.device), 0.0)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Re-apply the masks after every ``optimizer.step()`` (until :meth:`remove`)."""

        def after_step(_opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
            self.apply()

        self._handles.append(optimizer.register_step_post_hook(after_step))

    def remove(self) -> None:
        """Remove every gradient and optimizer hook; the weights keep their current values."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> MaskEnforcer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def _grad_hook(drop: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad.masked_fill(drop.to(grad.device), 0.0)

    return hook
