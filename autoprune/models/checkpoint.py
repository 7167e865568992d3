"""Saving and safely loading model weights: no pickled code is ever executed.

Two formats are read:

* ``.safetensors`` files (by suffix), through :func:`safetensors.torch.load_file`;
* anything else through ``torch.load(..., weights_only=True)``, which only rebuilds tensors and plain
  containers and refuses every other pickled object. Accepted contents: a plain ``state_dict`` or a dict
  with a ``"state_dict"`` (also ``"model_state_dict"`` or ``"model"``) entry and an optional ``"meta"``
  dict, which is what :func:`save_checkpoint` writes.

Every failure (missing, truncated or corrupt file, refused object, weights that do not fit the model)
raises :class:`~autoprune.errors.CheckpointError` naming the file, the reason and the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from autoprune.errors import CheckpointError
from autoprune.models.registry import builtin_matching_keys

SAFETENSORS_SUFFIX = ".safetensors"
_STATE_KEYS = ("state_dict", "model_state_dict", "model")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile
_SAVE_HINT = "save a state_dict with torch.save(model.state_dict(), path) or safetensors"
#: Safetensors metadata key holding the state_dict's ``_metadata`` (module versions, JSON-encoded).
STATE_METADATA_KEY = "autoprune.state_dict_metadata"


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the weights of a checkpoint without running any pickled code.

    Args:
        path: A ``.safetensors`` file, or a file written by ``torch.save`` holding a state_dict (or a dict
            with a ``"state_dict"`` entry, as :func:`save_checkpoint` writes).

    Returns:
        The state_dict (parameter and buffer names to CPU tensors), without a ``module.`` prefix.

    Raises:
        CheckpointError: If the file is missing, truncated or corrupt, holds a pickled object other than
            tensors and plain containers, or does not hold a state_dict.
    """
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Like :func:`load_weights_file` but also return the checkpoint's ``meta`` dict (``{}`` if none)."""
    file = Path(path)
    if not file.is_file():
        if file.is_dir():
            reason = "is a folder, not a file"
        elif file.exists():
            reason = "is not a regular file (a device, pipe or socket)"
        else:
            reason = "does not exist"
        raise CheckpointError(f"checkpoint {str(file)!r} {reason}; pass the path of a saved checkpoint file")
    if file.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(file)!r} is empty (0 bytes); pass the path of a saved checkpoint")
    if file.suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(file)
    try:
        with warnings.catch_warnings():  # our error says it better than torch's pickle-protocol warning
            warnings.simplefilter("ignore")
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # A refused class names a GLOBAL; an unknown opcode ("Unsupported operand") is a corrupt file.
        refused = _refused_global(exc) or (_is_pickle(file) and "a plain Python pickle, not a torch.save file")
        if "weights only load failed" in str(exc).lower() and refused:
            raise CheckpointError(
                f"refused to unpickle {str(file)!r}: it holds Python objects other than tensors "
                f"({refused}), and loading them could run arbitrary code; {_SAVE_HINT}"
            ) from None
        raise _corrupt(file, exc) from None
    except Exception as exc:  # torch reports bad files as OSError, RuntimeError, EOFError, KeyError, ...
        raise _corrupt(file, exc) from None
    return _unpack(obj, file)


def load_checkpoint_into(model: nn.Module, path: str | Path, *, strict: bool = True) -> dict[str, Any]:
    """Load a checkpoint's weights into ``model`` (in place), safely (see :func:`load_weights_file`).

    Args:
        model: The model, built with the same architecture, classes and input channels as the
            checkpoint's.
        path: The checkpoint file.
        strict: Require the checkpoint and the model to have exactly the same keys. With ``False``,
            missing and unexpected keys are skipped; shape mismatches always fail, as does a checkpoint
            sharing no key with the model.

    Returns:
        The checkpoint's ``meta`` dict (``{}`` for a plain state_dict or a file without metadata).

    Raises:
        CheckpointError: If the file cannot be read safely or its weights do not fit ``model``; the
            message names a few missing / unexpected keys and shape mismatches and suggests a fix.
    """
    state, meta = read_checkpoint(path)
    if meta.get("kind") == "autoprune-supernet":
        raise CheckpointError(
            f"{path} is a supernet (written by `autoprune supernet`), not a dense checkpoint: pass it as "
            "--supernet (Supernet.load in Python), or give the dense model's own checkpoint"
        )
    check_fits(model, state, meta, Path(path), strict=strict)
    model.load_state_dict(with_state_metadata(state, model), strict=strict)
    return meta


def state_metadata_json(state: Mapping[str, torch.Tensor]) -> str | None:
    """The state_dict's ``_metadata`` (per module prefix, e.g. ``{"version": 2}``) as JSON; None if it has none.

    Safetensors keeps tensors only; modules such as torchvision's MNASNet refuse a state without their
    version, so the writers store this in the file's metadata (:data:`STATE_METADATA_KEY`).
    """
    metadata = getattr(state, "_metadata", None)
    return None if metadata is None else json.dumps(dict(metadata), default=str)


def with_state_metadata(
    state: Mapping[str, torch.Tensor], model: nn.Module, metadata: Mapping[str, Any] | None = None
) -> OrderedDict[str, torch.Tensor]:
    """``state`` as ``load_state_dict`` wants it: with the module versions of ``_metadata``.

    The versions come from ``metadata``, else from ``state`` itself, else from ``model``'s own state_dict
    (a file without them, e.g. safetensors written by another tool, is taken to be of the model's code).
    """
    result: OrderedDict[str, torch.Tensor] = OrderedDict(state)
    versions = metadata if metadata is not None else getattr(state, "_metadata", None)
    if versions is None:
        versions = getattr(model.state_dict(), "_metadata", None)
    if versions is not None:
        result._metadata = OrderedDict(versions)  # type: ignore[attr-defined]
    return result


def check_fits(
    model: nn.Module, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any], path: Path, *, strict: bool = True
) -> None:
    """Raise :class:`CheckpointError` unless ``state`` fits ``model`` and holds only finite numbers.

    The message names a few missing / unexpected keys and shape mismatches and suggests a fix (the
    ``--model`` the checkpoint was saved from, when its ``meta`` says).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    no_overlap = len(missing) == len(expected)
    if mismatched or no_overlap or (strict and (missing or unexpected)):
        raise CheckpointError(_mismatch_message(path, state, meta, missing, unexpected, mismatched))
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds non-finite weights (NaN or inf in {bad!r}): the training that "
            "wrote it diverged; retrain (e.g. with a lower --lr) or pass an earlier checkpoint"
        )


def save_checkpoint(model: nn.Module, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and ``meta`` atomically (temp file in the same folder, then rename).

    ``path`` ending in ``.safetensors`` writes a safetensors file whose metadata holds each ``meta``
    value JSON-encoded; any other path writes ``{"state_dict": ..., "meta": ...}`` with ``torch.save``.
    Either way :func:`load_checkpoint_into` reads it back. ``meta`` should be JSON-serializable; other
    values (paths, ...) are stored as their ``str()`` so that the file stays loadable without pickle.

    Args:
        model: The model whose ``state_dict`` to save.
        path: The destination; missing parent folders are created, an existing file is replaced.
        meta: Metadata to store with the weights (model name, dataset, accuracy, ...).

    Returns:
        The path written.

    Raises:
        TypeError: If ``meta`` has keys JSON cannot encode (e.g. tuples).
    """
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    plain_meta: dict[str, Any] = json.loads(json.dumps(dict(meta or {}), default=str))
    tmp = file.with_name(f".{file.name}.{uuid.uuid4().hex}.tmp")
    try:
        if file.suffix == SAFETENSORS_SUFFIX:
            metadata = {key: json.dumps(value) for key, value in plain_meta.items()}
            metadata.setdefault("format", "pt")
            state = model.state_dict()
            versions = state_metadata_json(state)
            if versions is not None:
                metadata[STATE_METADATA_KEY] = versions
            save_file(_unshared(state), str(tmp), metadata=metadata)
        else:
            torch.save({"state_dict": model.state_dict(), "meta": plain_meta}, tmp)
        os.replace(tmp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return file


def _read_safetensors(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        state = load_file(str(file), device="cpu")
        with safe_open(str(file), framework="pt") as handle:
            metadata: dict[str, str] = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise _corrupt(file, exc) from None
    meta: dict[str, Any] = {}
    versions = state_metadata_from_json(metadata.pop(STATE_METADATA_KEY, None))
    for key, raw in metadata.items():
        try:
            meta[key] = json.loads(raw)
        except json.JSONDecodeError:  # written by another tool: keep the string
            if not (key == "format" and raw == "pt"):  # the safetensors convention, not user metadata
                meta[key] = raw
    if versions is not None:
        state = OrderedDict(state)
        state._metadata = versions  # type: ignore[attr-defined]
    return _strip_wrappers(state), meta


def state_metadata_from_json(raw: str | None) -> OrderedDict[str, Any] | None:
    """The ``_metadata`` that :func:`state_metadata_json` wrote (None if absent or unreadable)."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return OrderedDict(data) if isinstance(data, dict) else None


def _unpack(obj: object, file: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Find the state_dict (and meta) in what ``torch.load`` returned, checking that it is one."""
    meta: dict[str, Any] = {}
    if isinstance(obj, dict):
        inner = next((obj[k] for k in _STATE_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is not None:
            raw_meta = obj.get("meta")
            meta = dict(raw_meta) if isinstance(raw_meta, dict) else {}
            obj = inner
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"checkpoint {str(file)!r} holds a {type(obj).__name__}, not a state_dict; {_SAVE_HINT}"
        )
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"checkpoint {str(file)!r} is not a state_dict: entry {key!r} holds a "
                f"{type(value).__name__}, not a tensor (expected a plain state_dict or a dict with a "
                f"'state_dict' entry); {_SAVE_HINT}"
            )
    return _strip_wrappers(obj), meta


def _strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a prefix shared by every key that wrappers add (``module.`` from DataParallel, ...), keeping
    the module versions (``_metadata``) under the same names."""
    versions = getattr(state, "_metadata", None)
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
            if versions is not None:
                stem = prefix.rstrip(".")
                versions = OrderedDict(
                    (k[len(prefix):] if k.startswith(prefix) else "", v) for k, v in versions.items()
                    if k.startswith(prefix) or k == stem
                )
    if versions is None:
        return dict(state)
    result: OrderedDict[str, torch.Tensor] = OrderedDict(state)
    result._metadata = versions  # type: ignore[attr-defined]
    return result


def _unshared(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors that share no memory (safetensors refuses tied or sliced storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


def _corrupt(file: Path, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"cannot read checkpoint {str(file)!r}: the file is truncated, corrupt or not a checkpoint "
        f"({type(exc).__name__}: {first_sentence(exc)}); re-save it with save_checkpoint() or "
        "torch.save(state_dict)"
    )


def first_sentence(exc: BaseException, limit: int = 160) -> str:
    """The first sentence of an exception's message, whole (cut at a word, with an ellipsis, if over limit)."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else "unexpected end of file"
    sentence = text.split(". ")[0].rstrip(".")
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0] + " ..."
    return sentence


def _is_pickle(file: Path) -> bool:
    """Whether the file starts like a pickle (PROTO opcode and a protocol number), not like random bytes."""
    with file.open("rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _refused_global(exc: BaseException) -> str | None:
    """The line of torch's message that names the refused object, else a generic description."""
    for line in str(exc).splitlines():
        if "GLOBAL" in line:
            return line.strip().rstrip(".")
    return None


def _mismatch_message(
    file: Path,
    state: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
) -> str:
    parts = [
        f"{len(items)} {what} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})"
        for what, items in (
            ("keys missing from the checkpoint", missing),
            ("unexpected keys in the checkpoint", unexpected),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    hint = _fix_hint(state, meta, keys_differ=bool(missing or unexpected))
    return f"checkpoint {str(file)!r} does not fit the model: {'; '.join(parts)}. {hint}"


def _fix_hint(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *, keys_differ: bool) -> str:
    saved_for, dataset = meta.get("model"), meta.get("dataset")
    if isinstance(saved_for, str):
        on = f" on --dataset {dataset}" if isinstance(dataset, str) else ""
        return f"It was saved from --model {saved_for}{on}; pass the same (a pruned model needs its plan)."
    if not keys_differ:
        return (
            "The layers are the same but their sizes differ: use a dataset with the same number of classes "
            "and input channels as the checkpoint's (a pruned model must be loaded with its plan)."
        )
    guesses = builtin_matching_keys(set(state))
    if guesses:
        return f"Its layer names match --model {' or '.join(guesses)}; pass that (and the same dataset)."
    return (
        "Pass the --model it was trained with, on a dataset with the same number of classes and input "
        "channels (a pruned model needs its plan)."
    )
