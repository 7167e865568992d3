"""The deploy form of a (pruned) model: BatchNorm folded into the layer before it, channels-last memory.

Pruning removes channels; whether that turns into speed also depends on what runs around the convolutions.
In eager PyTorch every BatchNorm is its own memory-bound pass over the activations, and on CPU the
default NCHW layout makes oneDNN reorder them around each convolution. Both costs shrink less than the
MACs do, so a pruned model loses more of its share to them. Folding BatchNorm (exact in eval mode) and
switching to channels-last removes most of them, for the dense and the pruned model alike; compare both
in the same form. The folding is torch.fx's ``fuse``, which folds a BatchNorm that directly follows a
conv or linear layer (and is that layer's only user); the others stay, e.g. DenseNet's BatchNorms over a
concatenation, and so do all of them in a model torch.fx cannot trace. Any BatchNorm left unfolded gives a
:class:`DeployWarning` naming how many and one of them; the model still gets channels-last.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from autoprune.errors import AutoPruneError

#: Forms a model is timed in: ``eager`` (as it is) or ``deploy`` (:func:`optimize_for_inference`).
FORMS: tuple[str, ...] = ("eager", "deploy")


class DeployWarning(UserWarning):
    """The deploy form could not apply every optimisation to this model."""


def optimize_for_inference(model: nn.Module, *, fold_bn: bool = True, channels_last: bool = True) -> nn.Module:
    """A copy of ``model`` for inference (the original is not changed; the copy is in eval mode).

    Args:
        model: A dense or physically pruned model.
        fold_bn: Fold every BatchNorm into the convolution or linear layer that feeds it (torch.fx).
        channels_last: Store 4-d weights channels-last, so convolutions run in NHWC.

    Returns:
        The optimised copy: same outputs as ``model.eval()`` up to float rounding. For training or
        saving weights use the original (the folded copy has other parameter names).

    Warns:
        DeployWarning: some BatchNorm layers stay unfolded (not right after a conv/linear layer, or the
            model cannot be traced), naming how many and one of them.
    """
    out = copy.deepcopy(model).eval()
    if fold_bn:
        try:
            out = fuse(out)
        except Exception as exc:  # torch.fx cannot trace data-dependent control flow, for one
            warnings.warn(
                f"BatchNorm not folded: torch.fx could not trace {type(model).__name__} "
                f"({type(exc).__name__}: {str(exc)[:120]}); the model keeps its BatchNorm layers",
                DeployWarning,
                stacklevel=2,
            )
        else:
            _warn_unfolded(out, model)
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    return out.eval()


def _warn_unfolded(folded: nn.Module, model: nn.Module) -> None:
    """Warn if BatchNorm layers used by ``folded``'s forward are left (they cost a pass each)."""
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        total = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        warnings.warn(
            f"{len(left)} of {total} BatchNorm layers of {type(model).__name__} are not folded, e.g. {left[0]!r}: "
            "they do not directly follow a conv or linear layer (a BatchNorm over a concatenation or after "
            "an activation); they stay as separate layers, so the deploy form runs slower than a fully folded one",
            DeployWarning,
            stacklevel=3,
        )


def check_form(form: object) -> str:
    """``form`` if it is one of :data:`FORMS`.

    Raises:
        AutoPruneError: another value (naming the valid ones).
    """
    if form not in FORMS:
        raise AutoPruneError(f"form {form!r} is not one of {', '.join(FORMS)}")
    return str(form)


def in_form(model: nn.Module, form: str) -> nn.Module:
    """``model`` itself (``eager``) or its :func:`optimize_for_inference` copy (``deploy``).

    Raises:
        AutoPruneError: an unknown form.
    """
    return optimize_for_inference(model) if check_form(form) == "deploy" else model
