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

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch_pruning as tp
from torch import nn

from autoprune._device import model_device
from autoprune.engine.rounding import channel_groups, group_step, round_channels
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
    """

    name: str
    kind: MemberKind
    size: int


@dataclass(frozen=True)
class PrunableGroup:
    """Coupled channels pruned together.

    Attributes:
        name: Stable name: the name of the root conv/linear whose output channels define the group.
        channels: Number of prunable channels (indices ``0..channels-1`` of the root's output).
        members: Every layer the group touches.
        macs: Dense MACs of the conv/linear layers whose input or output channels are in the group.
        channel_groups: Blocks of a grouped convolution in the group (1 if none): channels must then be
            removed at the same positions in every block of ``channels // channel_groups``, so kept
            counts are multiples of it.
    """

    name: str
    channels: int
    members: tuple[GroupMember, ...]
    macs: int
    channel_groups: int = 1
    tp_group: Any = field(default=None, repr=False, compare=False, hash=False)

    @property
    def root_module(self) -> str:
        return self.name

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
        for name in ignored_layers:
            if name not in modules:
                raise AutoPruneError(
                    f"ignored layer {name!r} is not a module of the model; "
                    f"use one of its module names, e.g. {list(modules)[1:4]}"
                )
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
        self.dg = tp.DependencyGraph()
        example = torch.zeros(self.input_shape, device=model_device(model))
        was_training = model.training
        try:
            with warnings.catch_warnings(), torch.enable_grad():  # tracing needs autograd, even under no_grad
                warnings.filterwarnings("ignore", message=".*Unwrapped parameters.*")
                warnings.filterwarnings("ignore", message=".*Unknown operation.*")
                self.dg.build_dependency(
                    model,
                    example_inputs=example,
                    customized_pruners={t: BarrierPruner() for t in barrier_types},
                    verbose=False,
                )
        except AutoPruneError:
            raise
        except Exception as exc:  # tracing runs arbitrary model code
            raise AutoPruneError(
                f"could not trace {type(model).__name__} on input shape {self.input_shape}: "
                f"{type(exc).__name__}: {exc}. Check that --dataset and --image-size match the model."
            ) from exc
        finally:
            model.train(was_training)
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
        state = {k: v for k, v in self.__dict__.items() if k not in self._TRACED}
        state["_untraced_groups"] = [g.name for g in self.groups]
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
        self._trace()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnsupportedLayerWarning)  # said when first traced
            groups = self._collect_groups()
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
        for tp_group in self.dg.get_all_groups(ignored_layers=ignored):
            members: list[GroupMember] = []
            barrier = None
            for item in tp_group:
                target = item.dep.target.module
                if type(target) in barrier_types:
                    barrier = self._name_of.get(target, type(target).__name__)
                    break
                name = self._name_of.get(target)
                if name is None:  # a parameter-free op (add, concat, reshape): nothing to prune there
                    continue
                handler = item.dep.handler
                kind: MemberKind = "out" if self.dg.is_out_channel_pruning_fn(handler) else "in"
                if isinstance(target, nn.Parameter):
                    kind = "out"
                members.append(GroupMember(name=name, kind=kind, size=len(item.idxs)))
            root = self._name_of[tp_group[0].dep.target.module]
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
            touched = {m.name for m in members}
            macs = sum(c.macs for n, c in self.costs.items() if n in touched)
            groups.append(
                PrunableGroup(
                    name=root,
                    channels=channels,
                    members=tuple(_merge(members)),
                    macs=macs,
                    channel_groups=channel_groups(tp_group, channels),
                    tp_group=tp_group,
                )
            )
        return groups

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
        """Precompute, per layer, which groups cut its input/output channels and by what share."""
        self._out_of: dict[str, list[tuple[int, float]]] = {}
        self._in_of: dict[str, list[tuple[int, float]]] = {}
        modules = dict(self.model.named_modules())
        params = dict(self.model.named_parameters())
        for gi, g in enumerate(self.groups):
            for m in g.members:
                if m.name in modules:
                    mod = modules[m.name]
                    if isinstance(mod, nn.Linear):
                        total = mod.out_features if m.kind == "out" else mod.in_features
                    elif isinstance(mod, nn.modules.conv._ConvNd):
                        total = mod.out_channels if m.kind == "out" else mod.in_channels
                    else:
                        weight = getattr(mod, "weight", None)
                        total = weight.shape[0] if isinstance(weight, torch.Tensor) else m.size
                elif m.name in params:
                    total = params[m.name].numel()
                else:
                    continue
                target = self._out_of if m.kind == "out" else self._in_of
                target.setdefault(m.name, []).append((gi, m.size / max(total, 1)))
        self._depthwise = {
            n for n, mod in modules.items()
            if isinstance(mod, nn.modules.conv._ConvNd) and mod.groups == mod.out_channels > 1
        }
        self._param_terms: list[tuple[str, str, int]] = []  # (owner, kind, numel)
        for pname, p in params.items():
            owner, _, leaf = pname.rpartition(".")
            if pname in self._out_of:  # unwrapped parameter pruned on its own
                self._param_terms.append((pname, "out", p.numel()))
            elif isinstance(modules.get(owner), (nn.Linear, nn.modules.conv._ConvNd)) and leaf == "weight":
                self._param_terms.append((owner, "both", p.numel()))
            else:
                self._param_terms.append((owner, "out", p.numel()))

    def _fractions(self, keep: Mapping[str, int]) -> list[float]:
        for name in keep:
            if name not in self._by_name:
                self.group(name)  # raises with the valid names
        return [keep.get(g.name, g.channels) / g.channels for g in self.groups]

    def _keep(self, table: dict[str, list[tuple[int, float]]], name: str, frac: list[float]) -> float:
        return 1.0 - sum(w * (1.0 - frac[gi]) for gi, w in table.get(name, ()))

    def predict_macs(self, keep: Mapping[str, int]) -> int:
        """Dense conv/linear MACs of the model after keeping ``keep[name]`` channels of each group.

        Groups not in ``keep`` stay whole. Exact (checked against counting the physically pruned
        model in the tests).
        """
        frac = self._fractions(keep)
        total = 0.0
        for name, cost in self.costs.items():
            out_keep = self._keep(self._out_of, name, frac)
            in_keep = 1.0 if name in self._depthwise else self._keep(self._in_of, name, frac)
            total += cost.macs * out_keep * in_keep
        return round(total)

    def predict_params(self, keep: Mapping[str, int]) -> int:
        """Parameter count of the model after keeping ``keep[name]`` channels of each group."""
        frac = self._fractions(keep)
        total = 0.0
        for owner, kind, numel in self._param_terms:
            out_keep = self._keep(self._out_of, owner, frac)
            in_keep = 1.0 if kind == "out" or owner in self._depthwise else self._keep(self._in_of, owner, frac)
            total += numel * out_keep * in_keep
        return round(total)

    def keep_counts(self, keep_ratios: Mapping[str, float], *, round_to: int = 1) -> dict[str, int]:
        """Channel counts for keep ratios, rounded to a multiple of ``round_to`` (at least one step)."""
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
            counts[g.name] = round_channels(ratio * g.channels, g.channels, group_step(g, round_to))
        return counts


def _merge(members: list[GroupMember]) -> list[GroupMember]:
    merged: dict[tuple[str, str], int] = {}
    for m in members:
        key = (m.name, m.kind)
        merged[key] = max(merged.get(key, 0), m.size)
    return [GroupMember(name=n, kind=k, size=s) for (n, k), s in merged.items()]  # type: ignore[arg-type]
