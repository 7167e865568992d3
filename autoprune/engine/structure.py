"""Prunable channel groups of a model, from Torch-Pruning's dependency graph.

A *group* is a set of channels that must be pruned together: a conv's output channels, its BN, the next
convs' input channels, and every layer tied to them by residual additions, concatenations or depthwise
convs. Everything downstream (plans, search spaces, searchers) speaks in groups, never in raw modules.

Two guarantees that Torch-Pruning alone does not give:

- the layers that produce the model's output are never pruned (a Linear head, or a 1x1 conv head
  followed by pooling), so the output shape never changes;
- leaf modules with parameters that the graph cannot handle (custom layers) do not crash anything: the
  channels that flow into or out of them are left out of the groups, with a warning naming the module.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from autoprune._device import model_device
from autoprune.engine._layers_check import check_layer_names
from autoprune.engine.cost_model import CostModel
from autoprune.engine.discovery import GuardedGraph, Rejected, find_groups, group_problem
from autoprune.engine.probe import broken_groups
from autoprune.engine.rounding import channel_blocks, round_count
from autoprune.engine.segments import split_segments
from autoprune.engine.tracing import BarrierPruner, find_unsupported_layers, output_layers
from autoprune.errors import AutoPruneError
from autoprune.metrics.macs import layer_costs

MemberKind = Literal["out", "in"]


class UnsupportedLayerWarning(UserWarning):
    """A layer the dependency graph cannot prune; its channels are left out of the groups."""


@dataclass(frozen=True)
class GroupMember:
    """One layer touched by a group.

    Attributes:
        name: Module (or unwrapped parameter) name in ``model.named_modules()``.
        kind: ``"out"`` if the group removes this layer's output channels (conv filters, BN channels),
            ``"in"`` if it removes input channels (the next conv's input, a linear's input features).
        size: How many of this layer's channels (or features) the group covers.
        per_segment: The layer's channels kept per kept position of each segment of the group (see
            :mod:`autoprune.engine.segments`); ``(size // positions,)`` for a group of one segment.
    """

    name: str
    kind: MemberKind
    size: int
    per_segment: tuple[int, ...] = ()


@dataclass(frozen=True)
class PrunableGroup:
    """Coupled channels pruned together.

    Attributes:
        name: Stable name: the name of the root conv/linear whose output channels define the group.
        channels: Number of prunable channels (indices ``0..channels-1`` of the root's output).
        members: Every layer the group touches.
        macs: Dense MACs of the conv/linear layers whose input or output channels are in the group.
        channel_groups: Blocks of the grouped convolutions and GroupNorms in the group (1 if none):
            channels are removed at the same positions in every block of ``channels // channel_groups``
            (each conv group or GroupNorm group keeps as many channels), so kept counts are multiples of it.
        segments: Positions (within a block) of each segment of the group: the branches of a
            concatenation the group spans (see :mod:`autoprune.engine.segments`); ``()`` for one segment.
            Every segment keeps at least one position.
    """

    name: str
    channels: int
    members: tuple[GroupMember, ...]
    macs: int
    channel_groups: int = 1
    segments: tuple[tuple[int, ...], ...] = field(default=(), repr=False)
    tp_group: Any = field(default=None, repr=False, compare=False, hash=False)

    @property
    def root_module(self) -> str:
        return self.name

    @property
    def min_channels(self) -> int:
        """The fewest channels the group can keep: one block per segment."""
        return self.channel_groups * max(1, len(self.segments))

    def modules(self, kind: MemberKind | None = None) -> list[str]:
        """Names of the member layers (optionally only those of one kind)."""
        return [m.name for m in self.members if kind is None or m.kind == kind]


class ModelStructure:
    """The prunable groups of one model and an exact, fast MACs model over them.

    Args:
        model: The model (not modified; its graph is traced once on ``input_shape``).
        input_shape: ``(N, C, H, W)`` of the inputs; the batch size is ignored.
        ignored_layers: Extra module names never to prune (output layers are always ignored).

    Raises:
        AutoPruneError: the model cannot be traced (with the reason).
    """

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        *,
        ignored_layers: Sequence[str] = (),
    ) -> None:
        self.model = model
        self.input_shape = (1, *input_shape[1:])
        modules = dict(model.named_modules())
        check_layer_names(modules, ignored_layers, role="ignored", examples=list(modules)[1:4])
        self.ignored_layers = tuple(ignored_layers)
        self.unsupported = find_unsupported_layers(model)
        self._trace()
        self.output_layers = [self._name_of[m] for m in output_layers(self.dg)]
        self.costs = layer_costs(model, self.input_shape)
        self.dense_macs = sum(c.macs for c in self.costs.values())
        self._set_groups(self._collect_groups())
        self.dense_params = sum(p.numel() for p in model.parameters())
        self._build_cost_model()

    def _trace(self) -> None:
        """Build Torch-Pruning's dependency graph of ``self.model`` (``self.dg``) and the module-name map."""
        model = self.model
        modules = dict(model.named_modules())
        barrier_types = {type(modules[n]) for n in self.unsupported}
        self.dg = GuardedGraph()
        example = torch.zeros(self.input_shape, device=model_device(model))
        modes = {m: m.training for m in model.modules()}
        try:
            with warnings.catch_warnings(), torch.enable_grad():  # tracing needs autograd, even under no_grad
                warnings.filterwarnings("ignore", message=".*Unwrapped parameters.*")
                warnings.filterwarnings("ignore", message=".*Unknown operation.*")
                self.dg.build_dependency(
                    model,
                    example_inputs=(example,),  # a tuple: a bare tensor is first tried unbatched
                    customized_pruners={t: BarrierPruner() for t in barrier_types},
                    verbose=False,
                )
        except AutoPruneError:
            raise
        except Exception as exc:  # tracing runs arbitrary model code
            raise AutoPruneError(_trace_failure(model, example, exc)) from exc
        finally:
            for module, training in modes.items():
                module.training = training
        self._name_of: dict[Any, str] = {m: n for n, m in model.named_modules()}
        self._name_of.update(self.dg._param_to_name)

    def _set_groups(self, groups: list[PrunableGroup]) -> None:
        self.groups = groups
        self._by_name = {g.name: g for g in groups}

    # ------------------------------------------------------------- pickling
    # The dependency graph holds the autograd nodes of its trace (not picklable, not deep-copyable) and
    # is derived from the model and the input shape; so are the groups' Torch-Pruning groups. A pickled
    # or deep-copied structure leaves them out and traces its own model again on first use (not while
    # unpickling: a supernet's gates reach the structure from inside the model, before it is rebuilt).
    _TRACED = ("dg", "_name_of", "groups", "_by_name")

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in self._TRACED and k != "_retracing"}
        # untraced, or being retraced (a copy made while tracing, e.g. by the probe): the names it expects
        names = self.__dict__.get("_untraced_groups") or self.__dict__.get("_retracing")
        state["_untraced_groups"] = names if names is not None else [g.name for g in self.groups]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __getattr__(self, name: str) -> Any:
        # only reached for missing attributes: the traced ones of an unpickled structure
        if name in ModelStructure._TRACED and "_untraced_groups" in self.__dict__:
            self._retrace()
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _retrace(self) -> None:
        expected = self.__dict__.pop("_untraced_groups")
        self.__dict__["_retracing"] = expected
        try:
            self._trace()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnsupportedLayerWarning)  # said when first traced
                groups = self._collect_groups()
        finally:
            del self.__dict__["_retracing"]
        if [g.name for g in groups] != expected:
            raise AutoPruneError(
                f"the model of this unpickled structure has changed since it was traced ({len(groups)} groups, "
                f"{len(expected)} expected): build a new ModelStructure for it"
            )
        self._set_groups(groups)

    # ------------------------------------------------------------------ groups
    def _collect_groups(self) -> list[PrunableGroup]:
        modules = dict(self.model.named_modules())
        ignored = [modules[n] for n in (*self.ignored_layers, *self.output_layers)]
        barrier_types = {type(modules[n]) for n in self.unsupported}
        groups: list[PrunableGroup] = []
        warned: set[str] = set()
        tp_groups, rejected = find_groups(self.dg, ignored, label=type(self.model).__name__)
        for tp_group in tp_groups:
            problem = group_problem(self.dg, tp_group, self._name_of)
            if problem is not None:
                rejected.append(Rejected(self._name_of[tp_group[0].dep.target.module], problem))
                continue
            barrier = next(
                (self._name_of.get(it.dep.target.module, type(it.dep.target.module).__name__)
                 for it in tp_group if type(it.dep.target.module) in barrier_types),
                None,
            )
            if barrier is not None:
                if barrier not in warned:
                    warned.add(barrier)
                    warnings.warn(
                        f"layer {barrier!r} ({type(self._module(barrier)).__name__}) is not supported by the "
                        "dependency graph; channels flowing into or out of it are not pruned. Register a "
                        "Torch-Pruning pruner for it to make them prunable.",
                        UnsupportedLayerWarning,
                        stacklevel=3,
                    )
                continue
            channels = len(tp_group[0].idxs)
            if channels < 2:
                continue
            group = self._make_group(tp_group, channels)
            if group is not None:
                groups.append(group)
        broken = broken_groups(self.model, self.input_shape, groups, name_of=self._name_of,
                               is_out=self.dg.is_out_channel_pruning_fn)
        if broken:
            example = next(iter(broken.values()))
            reason = (f"pruning it breaks the model's forward pass ({example}): its forward reads a size that "
                      "pruning does not update (a head count, head size or window size in a reshape)")
            rejected.extend(Rejected(name, reason) for name in broken)
            groups = [g for g in groups if g.name not in broken]
        _warn_rejected(type(self.model).__name__, rejected)
        return groups

    def _make_group(self, tp_group: Any, channels: int) -> PrunableGroup | None:
        """The group of one Torch-Pruning group (None, with a warning, if its layers cannot be pruned together)."""
        root = self._name_of[tp_group[0].dep.target.module]
        blocks, problem = channel_blocks(tp_group, channels, self.dg.is_out_channel_pruning_fn, self._name_of)
        if problem is not None:
            warnings.warn(
                f"group {root!r} is left unpruned: {problem}; its channels keep their full width",
                UnsupportedLayerWarning,
                stacklevel=4,
            )
            return None
        roots: dict[tuple[str, str], dict[int, int]] = {}
        for item in tp_group:
            target = item.dep.target.module
            name = self._name_of.get(target)
            if name is None:  # a parameter-free op (add, concat, reshape): nothing to prune there
                continue
            out_side = isinstance(target, nn.Parameter) or self.dg.is_out_channel_pruning_fn(item.dep.handler)
            mapping = roots.setdefault((name, "out" if out_side else "in"), {})
            for idx, root_idx in zip(item.idxs, item.root_idxs, strict=True):
                # an unknown root (Torch-Pruning could not map it) is counted with the channel at its position
                mapping[int(idx)] = int(idx) % channels if root_idx is None else int(root_idx)
        segments, per_segment = split_segments(channels, blocks, roots)
        members = tuple(
            GroupMember(name=name, kind=kind, size=len(mapping), per_segment=per_segment[(name, kind)])  # type: ignore[arg-type]
            for (name, kind), mapping in roots.items()
        )
        touched = {m.name for m in members}
        return PrunableGroup(
            name=root,
            channels=channels,
            members=members,
            macs=sum(c.macs for n, c in self.costs.items() if n in touched),
            channel_groups=blocks,
            segments=segments,
            tp_group=tp_group,
        )

    def _module(self, name: str) -> nn.Module:
        return dict(self.model.named_modules())[name]

    def group(self, name: str) -> PrunableGroup:
        """The group called ``name``.

        Raises:
            AutoPruneError: unknown group (with the valid names).
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise AutoPruneError(
                f"unknown group {name!r}; this model's groups are: {', '.join(self._by_name)}"
            ) from None

    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]

    # ------------------------------------------------------- MACs/params model
    def _build_cost_model(self) -> None:
        """The exact cost model over the groups (see :mod:`autoprune.engine.cost_model`)."""
        self.cost_model = CostModel(self.model, [dataclasses.replace(g, tp_group=None) for g in self.groups],
                                    self.costs)

    def allocations(self, keep: Mapping[str, int]) -> list[tuple[float, ...]]:
        """Kept positions per segment of every group for kept counts ``keep`` (missing groups whole).

        Raises:
            AutoPruneError: an unknown group (with the valid names), or a count the group cannot keep
                (not a multiple of its channel blocks, or fewer than one block per segment).
        """
        for name in keep:
            if name not in self._by_name:
                self.group(name)  # raises with the valid names
        try:
            return self.cost_model.allocations(keep)
        except ValueError as exc:
            raise AutoPruneError(str(exc)) from None

    def predict_macs(self, keep: Mapping[str, int]) -> int:
        """Dense conv/linear MACs of the model after keeping ``keep[name]`` channels of each group.

        Groups not in ``keep`` stay whole. Exact for the channels :func:`~autoprune.engine.selection.select_kept`
        keeps (checked against counting the physically pruned model in the tests).
        """
        return self.cost_model.macs(self.allocations(keep))

    def predict_params(self, keep: Mapping[str, int]) -> int:
        """Parameter count of the model after keeping ``keep[name]`` channels of each group."""
        return self.cost_model.params(self.allocations(keep))

    def keep_counts(self, keep_ratios: Mapping[str, float], *, round_to: int = 1) -> dict[str, int]:
        """Channel counts for keep ratios, rounded to allowed counts: multiples of ``round_to`` and the group's
        channel blocks, at least one block per branch of a concatenation (see
        :func:`~autoprune.engine.rounding.round_count`)."""
        for name in keep_ratios:
            self.group(name)  # an unknown name raises, listing the valid ones
        counts = {}
        for g in self.groups:
            ratio = keep_ratios.get(g.name, 1.0)
            if not 0.0 < ratio <= 1.0:
                raise AutoPruneError(
                    f"keep ratio {ratio} for group {g.name!r} must be in (0, 1]: it is the fraction of "
                    "channels to keep"
                )
            counts[g.name] = round_count(g, ratio * g.channels, round_to)
        return counts


def _warn_rejected(label: str, rejected: list[Rejected]) -> None:
    """One warning per reason, naming the groups (their root layers) left unpruned for it."""
    by_reason: dict[str, list[str]] = {}
    for r in rejected:
        by_reason.setdefault(r.reason, []).append(r.root)
    for reason, roots in by_reason.items():
        more = f" and {len(roots) - 3} more" if len(roots) > 3 else ""
        warnings.warn(
            f"{len(roots)} group(s) of {label} left unpruned ({', '.join(map(repr, roots[:3]))}{more}): {reason}",
            UnsupportedLayerWarning,
            stacklevel=4,
        )


def _trace_failure(model: nn.Module, example: torch.Tensor, exc: Exception) -> str:
    """One line on why tracing failed: the input shape only if the dense model itself fails on it."""
    label, shape = type(model).__name__, tuple(example.shape)
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    try:
        with torch.no_grad():
            model.eval()(example)
    except Exception as plain:
        reason = " ".join(f"{type(plain).__name__}: {plain}".split())[:300]
        return (f"{label} does not run on input shape {shape} ({reason}): check that --dataset and --image-size "
                "match the model")
    return (f"could not trace {label} on input shape {shape} ({detail}): the model runs, but Torch-Pruning's "
            "dependency graph does not support one of its layer patterns: replace that layer or register a "
            "Torch-Pruning pruner for it")
