"""Arithmetic of training steps: full float32, or bfloat16 mixed precision.

``bf16`` runs each training step's forward pass under :func:`torch.autocast` with ``torch.bfloat16`` (the
weights, gradients and optimizer state stay float32) and keeps image tensors channels-last while training,
the layout bfloat16 convolution kernels are fastest with. No loss scaling is needed: bfloat16 has float32's
range. It roughly halves training time on CPUs with AMX / AVX512-BF16 and on Ampere or newer GPUs.
Evaluation (accuracy, adaptive BatchNorm scores, exports) always runs in float32, so reported numbers do not
depend on the training precision.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from autoprune.errors import TrainingError

#: The training precisions by name (``--precision``).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    """Raise ``ValueError`` naming ``precision`` and the choices if it is not one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} must be one of {', '.join(PRECISIONS)}")


class SlowPrecisionWarning(RuntimeWarning):
    """The requested precision runs, but emulated: slower than float32 on this device."""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX) that oneDNN uses for training."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without oneDNN: no fast bfloat16 path either
        return False


def slow_precision_message(precision: str, device: torch.device | str) -> str | None:
    """Why ``precision`` would be slow on ``device`` (``None`` when it is not).

    bfloat16 on a CPU without AVX512-BF16/AMX is emulated: measured 9.4x *slower* than float32 for a ResNet-56
    training step on an AVX2-only AMD EPYC (``benchmarks/results/precision_speed_avx2.md``).
    """
    if precision == "bf16" and torch.device(device).type == "cpu" and not cpu_has_native_bf16():
        return ("precision='bf16' on a CPU without AVX512-BF16/AMX is emulated and several times slower than "
                "fp32 (about 9x measured on an AVX2 CPU): use fp32 here, bf16 on a CPU or GPU that has it")
    return None


def check_device_supports(precision: str, device: torch.device | str) -> None:
    """Raise ``ValueError`` if ``device`` cannot train in ``precision`` (bfloat16 on a GPU without it); warn
    (:class:`SlowPrecisionWarning`) if it can only emulate it (bfloat16 on a CPU without AVX512-BF16/AMX)."""
    dev = torch.device(device)
    if precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision='bf16' is not supported by {dev} (needs an Ampere or newer GPU): use fp32")
    slow = slow_precision_message(precision, dev)
    if slow is not None:
        warnings.warn(slow, SlowPrecisionWarning, stacklevel=2)


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager[object]:
    """The context a training step's forward pass and loss run in."""
    dev = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=torch.bfloat16)


def prepare_input(x: torch.Tensor, precision: str) -> torch.Tensor:
    """``x`` in the memory layout training in ``precision`` uses (channels-last images for ``bf16``)."""
    if precision == "bf16" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


@contextlib.contextmanager
def training_layout(model: nn.Module, precision: str) -> Iterator[None]:
    """Keep ``model``'s 4-d weights channels-last while training in ``bf16``; contiguous again afterwards.

    Restoring the standard layout on exit (also on errors) keeps everything after training (pruning, which
    reshapes weights; safetensors export) independent of how the model was trained.

    Raises:
        TrainingError: the model flattens activations with ``.view()``, which channels-last tensors refuse
            (the message says to use ``.reshape()`` or ``--precision fp32``).
    """
    if precision != "bf16":
        yield
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield
    except RuntimeError as exc:
        if "view size is not compatible" not in str(exc):
            raise
        raise TrainingError(
            "the model reshapes a tensor with .view(), which fails on the channels-last layout bf16 training "
            "uses: write .reshape() or torch.flatten() in the model, or train with --precision fp32"
        ) from exc
    finally:
        model.to(memory_format=torch.contiguous_format)
