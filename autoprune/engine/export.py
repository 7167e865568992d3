"""Export a pruned model: weights without pickle (safetensors), the plan, and ONNX checked by onnxruntime."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from autoprune.engine.plan import PrunePlan, apply_plan
from autoprune.errors import CheckpointError, ExportError


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Write the model's state_dict as safetensors, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp)
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
    except Exception as exc:
        raise CheckpointError(f"cannot read weights file {weights}: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"weights {weights} do not fit the architecture the plan builds: {str(exc)[:300]}"
        ) from None
    return model


def export_onnx(
    model: nn.Module, input_shape: tuple[int, ...], path: str | Path, *, check: bool = True, atol: float = 1e-4
) -> float:
    """Export to ONNX (dynamic batch) and check it against PyTorch with onnxruntime.

    Returns:
        The largest absolute difference between onnxruntime and PyTorch outputs on random input.

    Raises:
        ExportError: the outputs differ by more than ``atol``, or are not finite.
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
    if not (np.isfinite(ref).all() and np.isfinite(out).all()):
        raise ExportError(
            f"the model's outputs are not finite (NaN or inf) on random input, so {path} cannot be checked: "
            "its weights or BatchNorm statistics hold NaN/inf; retrain or pass an earlier checkpoint"
        )
    diff = float(np.abs(out - ref).max())
    if not diff <= atol:  # NaN never passes
        raise ExportError(f"ONNX export {path} differs from PyTorch by {diff:.2e} > {atol:.0e}")
    return diff
