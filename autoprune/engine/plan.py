"""Prune plans: which channels (or weights) to keep, serializable and re-applicable.

A :class:`PrunePlan` is the only thing export needs besides weights: applied to a fresh copy of the base
model it rebuilds the pruned architecture, and the pruned weights then load into it without pickle.
"""

from __future__ import annotations

import base64
import copy
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from autoprune._jsonfile import JsonFile
from autoprune.defaults import STRUCTURED
from autoprune.engine.probe import forward_failure
from autoprune.engine.removal import ChannelRemover, Step, removal_steps
from autoprune.engine.structure import ModelStructure, UnsupportedLayerWarning
from autoprune.errors import AutoPruneError, CheckpointError

PLAN_VERSION = 1
MASK_GRANULARITIES = ("kernel", "vector", "fine")
GRANULARITIES = (STRUCTURED, *MASK_GRANULARITIES)


@dataclass
class PrunePlan(JsonFile):
    """The result of applying keep ratios with an importance ranking.

    Attributes:
        input_shape: ``(1, C, H, W)`` the model was traced with.
        granularity: ``"channel"`` (physically removed) or a mask granularity (``"kernel"``,
            ``"vector"``, ``"fine"``), which zeroes weights but keeps dense shapes.
        channels: Original channel count of every pruned group.
        kept: Per group, the sorted root-channel indices to keep (structured plans).
        masks: Per weight parameter name, a boolean keep mask (mask plans).
        meta: Free-form provenance (criterion, target, rounding, model name).
    """

    json_kind: ClassVar[str] = "plan"
    input_shape: tuple[int, ...]
    granularity: str = STRUCTURED
    channels: dict[str, int] = field(default_factory=dict)
    kept: dict[str, list[int]] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise AutoPruneError(
                f"granularity {self.granularity!r} is not one of {', '.join(GRANULARITIES)}"
            )
        for name, idxs in self.kept.items():
            n = self.channels.get(name)
            if n is None or not idxs or len(set(idxs)) != len(idxs) or min(idxs) < 0 or max(idxs) >= n:
                raise AutoPruneError(
                    f"plan group {name!r}: kept indices must be distinct, non-empty and in [0, {n}); "
                    f"got {len(idxs)} indices"
                )

    @property
    def keep_ratios(self) -> dict[str, float]:
        return {name: len(idxs) / self.channels[name] for name, idxs in self.kept.items()}

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        masks = {}
        for name, mask in self.masks.items():
            bits = np.packbits(mask.detach().cpu().numpy().astype(bool).ravel())
            masks[name] = {"shape": list(mask.shape), "bits": base64.b64encode(bits.tobytes()).decode()}
        data = asdict(self)
        data["masks"] = masks
        data["input_shape"] = list(self.input_shape)
        return {"plan_version": PLAN_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrunePlan:
        version = data.get("plan_version")
        if version != PLAN_VERSION:
            raise CheckpointError(f"plan_version {version!r} is not supported (expected {PLAN_VERSION})")
        masks = {}
        for name, m in data.get("masks", {}).items():
            shape = tuple(m["shape"])
            bits = np.frombuffer(base64.b64decode(m["bits"]), dtype=np.uint8)
            flat = np.unpackbits(bits)[: int(np.prod(shape))].astype(bool)
            masks[name] = torch.from_numpy(flat.reshape(shape).copy())
        return cls(
            input_shape=tuple(data["input_shape"]),
            granularity=data.get("granularity", STRUCTURED),
            channels={k: int(v) for k, v in data.get("channels", {}).items()},
            kept={k: [int(i) for i in v] for k, v in data.get("kept", {}).items()},
            masks=masks,
            meta=dict(data.get("meta", {})),
        )


def _check_compatible(structure: ModelStructure, plan: PrunePlan) -> None:
    missing = sorted(set(structure.group_names) - set(plan.channels))
    extra = sorted(set(plan.channels) - set(structure.group_names))
    if missing or extra:
        raise AutoPruneError(
            f"the plan does not fit this model: groups {(missing or extra)[:3]} are "
            f"{'missing from the plan' if missing else 'not in the model'}; the plan was made for a different "
            "model (check --model and the data's input shape)"
        )
    for name, n in plan.channels.items():
        group = structure.group(name)
        if group.channels != n:
            raise AutoPruneError(
                f"plan group {name!r} has {n} channels but the model's has {group.channels}: "
                "the plan was made for a different model (check --model and the data's input shape)"
            )


def apply_plan(model: nn.Module, plan: PrunePlan, *, inplace: bool = False) -> nn.Module:
    """Apply ``plan`` to ``model``: physically remove channels, or zero masked weights.

    Args:
        model: A base model of the architecture the plan was made for (dense, unpruned).
        plan: The plan.
        inplace: Modify ``model`` itself instead of a deep copy.

    Returns:
        The pruned model (structured: smaller layers; mask plans: same shapes, zeroed weights).
    """
    target = model if inplace else copy.deepcopy(model)
    if plan.granularity != STRUCTURED:
        apply_masks(target, plan.masks)
        return target
    _prune_groups(target, plan, list(plan.kept))
    failure = forward_failure(target, plan.input_shape)
    if failure is not None:
        raise AutoPruneError(_broken_message(model, plan, failure, locate=not inplace))
    return target


def _prune_groups(model: nn.Module, plan: PrunePlan, names: list[str], check: bool = False) -> str | None:
    """Remove the channels of groups ``names`` that ``plan`` drops (in place); with ``check``, run the model
    after each group and return the first group after which it fails (None if it never does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupportedLayerWarning)  # said when the plan was made
        structure = ModelStructure(model, plan.input_shape)
    _check_compatible(structure, plan)
    remover = ChannelRemover(model)
    for name in names:
        remover.apply(_removal_steps(structure, name, plan.kept[name]))
        if check and forward_failure(model, plan.input_shape) is not None:
            return name
    return None


def _broken_message(model: nn.Module, plan: PrunePlan, failure: str, *, locate: bool) -> str:
    """One line: the pruned model does not run, naming the group that broke it (found on a fresh copy)."""
    label = type(model).__name__
    culprit = _prune_groups(copy.deepcopy(model), plan, list(plan.kept), check=True) if locate else None
    where = f"removing channels of group {culprit!r}" if culprit else "pruning"
    fix = f"ignored_layers=[{culprit!r}]" if culprit else "ignored_layers=[...] for the layers involved"
    return (
        f"{where} breaks {label}: the pruned model does not run on input shape {tuple(plan.input_shape)} "
        f"({failure}); this layer pattern is not supported: prune with {fix} to leave it unpruned"
    )


def _removal_steps(structure: ModelStructure, name: str, kept: list[int]) -> list[Step]:
    """What removing every channel of group ``name`` not in ``kept`` removes from each layer."""
    group = structure.group(name)
    drop = set(range(group.channels)) - set(kept)
    return removal_steps(group, drop, structure._name_of, structure.dg.is_out_channel_pruning_fn)


def channel_masks(structure: ModelStructure, plan: PrunePlan) -> dict[str, torch.Tensor]:
    """Keep masks (per parameter name, over its output dim 0) equivalent to a structured plan.

    Zeroing a pruned channel's conv filter, bias and BN affine parameters makes the channel output
    exactly zero, so the masked dense model computes the same function as the physically pruned one
    (for conv/BN/ReLU networks). Normalisations over channels break this: under a LayerNorm or a
    GroupNorm a zeroed channel still enters the mean and variance of the channels normalised with it,
    so masked and pruned outputs differ (the supernet warns:
    :class:`~autoprune.supernet.gates.ApproximateGatesWarning`).
    """
    _check_compatible(structure, plan)
    params = dict(structure.model.named_parameters())
    modules = dict(structure.model.named_modules())
    masks: dict[str, torch.Tensor] = {}
    for name, kept in plan.kept.items():
        for target, is_param, out_side, _, _, idxs in _removal_steps(structure, name, kept):
            if is_param or not out_side:
                continue
            module = modules[target]
            for pname in ("weight", "bias"):
                full = f"{target}.{pname}" if target else pname
                if full not in params:
                    continue
                if isinstance(module, nn.modules.conv._ConvTransposeNd) and pname == "weight":
                    continue
                mask = masks.get(full, torch.ones(params[full].shape[0], dtype=torch.bool))
                mask[idxs] = False
                masks[full] = mask
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked entries of parameters in place (a mask broadcasts over trailing dims)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise AutoPruneError(f"mask for unknown parameter {name!r}: the plan belongs to another model")
        p = params[name]
        m = mask.to(p.device)
        while m.dim() < p.dim():
            m = m.unsqueeze(-1)
        p.mul_(m.to(p.dtype))
