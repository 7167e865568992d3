"""Export a pruned model: weights without pickle (safetensors), the plan, and ONNX checked by onnxruntime."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from autoprune.engine.plan import PrunePlan, apply_plan
from autoprune.errors import CheckpointError, ExportError
from autoprune.models.checkpoint import (
    STATE_METADATA_KEY,
    state_metadata_from_json,
    state_metadata_json,
    with_state_metadata,
)


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Write the model's state_dict as safetensors, atomically (temp file + rename).

    The state_dict's module versions (``_metadata``, which some modules check when loading, e.g.
    torchvision's MNASNet) go into the file's metadata; :func:`load_pruned` restores them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = model.state_dict()
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    versions = state_metadata_json(state_dict)
    metadata = {"format": "pt", **({STATE_METADATA_KEY: versions} if versions is not None else {})}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_pruned(base_model: nn.Module, plan: PrunePlan | str | Path, weights: str | Path) -> nn.Module:
    """Rebuild a pruned model: apply the plan to a fresh base model, then load its weights (no pickle).

    Raises:
        CheckpointError: unreadable weights or weights that do not fit the pruned architecture.
    """
    if not isinstance(plan, PrunePlan):
        plan = PrunePlan.load(plan)
    model = apply_plan(base_model, plan)
    try:
        state = load_file(str(weights))
        with safe_open(str(weights), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(STATE_METADATA_KEY)
    except Exception as exc:
        raise CheckpointError(f"cannot read weights file {weights}: {exc}") from None
    versions = state_metadata_from_json(raw)
    try:
        model.load_state_dict(with_state_metadata(state, model, versions), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"weights {weights} do not fit the architecture the plan builds: {str(exc)[:300]}"
        ) from None
    return model


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    path: str | Path,
    *,
    check: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> float:
    """Export to ONNX (dynamic batch) and check it against PyTorch with onnxruntime.

    The check passes when every output is within ``atol + rtol * |pytorch output|`` (as ``numpy.allclose``,
    so large logits are compared relative to their size) and both give the same prediction (argmax) for
    every input.

    Returns:
        The largest absolute difference between onnxruntime and PyTorch outputs on random input.

    Raises:
        ExportError: the outputs differ beyond the tolerance, predict differently, or are not finite.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    x = torch.randn((2, *input_shape[1:]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    if not check:
        return float("nan")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.inference_mode():
        ref = model(x).numpy()
    return _check_outputs(out, ref, path, atol=atol, rtol=rtol)


def _check_outputs(out: np.ndarray, ref: np.ndarray, path: Path, *, atol: float, rtol: float) -> float:
    """The largest absolute difference of ``out`` from ``ref``, after checking they agree (see :func:`export_onnx`)."""
    if not (np.isfinite(ref).all() and np.isfinite(out).all()):
        raise ExportError(
            f"the model's outputs are not finite (NaN or inf) on random input, so {path} cannot be checked: "
            "its weights or BatchNorm statistics hold NaN/inf; retrain or pass an earlier checkpoint"
        )
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    allowed = atol + rtol * np.abs(ref.astype(np.float64))
    worst = int(np.argmax(diff - allowed))
    if not bool((diff <= allowed).all()):
        raise ExportError(
            f"ONNX export {path} differs from PyTorch by {diff.flat[worst]:.3g} on an output of "
            f"{ref.flat[worst]:.3g} (allowed {atol:g} + {rtol:g} x |output|): onnxruntime does not compute "
            "what the model computes; export with --no-onnx, or check the layers the model uses"
        )
    if ref.ndim == 2 and ref.shape[1] > 1 and _predictions_differ(out, ref, atol=atol, rtol=rtol):
        raise ExportError(
            f"ONNX export {path} predicts other classes than PyTorch on random input (largest difference "
            f"{diff.max():.3g}): onnxruntime does not compute what the model computes; export with --no-onnx"
        )
    return float(diff.max())


def _predictions_differ(out: np.ndarray, ref: np.ndarray, *, atol: float, rtol: float) -> bool:
    """Whether onnxruntime picks a class PyTorch scores clearly (beyond the tolerance) below its own pick.

    A tie within the tolerance (e.g. an untrained head with equal logits) is not a disagreement.
    """
    rows = np.arange(ref.shape[0])
    top = ref[rows, ref.argmax(axis=1)].astype(np.float64)
    picked = ref[rows, out.argmax(axis=1)].astype(np.float64)
    return bool((top - picked > atol + rtol * np.abs(top)).any())
