"""Bounded group discovery: Torch-Pruning's dependency graph with limits, and groups it cannot prune right.

Torch-Pruning finds a group by walking the graph from a root layer and mapping channel indices through
every reshape, concatenation and split on the way. Three things go wrong on some torchvision models, and
this module turns each into a bounded, named outcome:

- **Unbounded walks** (Swin, MaxViT): the reshapes around window attention and the relative-position-bias
  tables are mapped as *flattens* (each index becomes ``stride`` indices; Torch-Pruning cannot see the 5-D
  sizes of these views and falls back to 2-D/4-D rules). The walk goes round the attention's cycles
  (bias add, softmax, matmul and back) and multiplies the index list by the stride on every pass, since a
  changed list counts as new work: 3 → 96 → 3072 → 98k → 3M indices, 15+ GB within minutes. Here a flatten
  that would produce more indices than a few times the model's widest layer stops the walk: that root's
  group is left out, with the op named. A wall-clock limit bounds the whole discovery.
- **Mappings that crash** (ShuffleNetV2's channel shuffle, view → transpose → view, divides by zero while
  building the graph): the op is recorded as unmapped and every group through it is left out.
- **Groups that would prune wrongly**: the embedding size of ``nn.MultiheadAttention`` (pruning it regroups
  the heads, and a ViT's ``hidden_dim``, class token and position embedding no longer fit), and groups that
  map channels outside a layer's range (a residual stream walked into the head dimension of a relative
  position bias table).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch_pruning as tp
from torch import nn
from torch_pruning.dependency import index_mapping

from autoprune.errors import AutoPruneError

#: Wall-clock limit of group discovery (seconds) and the largest graph walked.
DISCOVERY_TIME_S = 120.0
MAX_GRAPH_NODES = 50_000
#: A flatten may produce at most this many times the widest layer's channels (features) in indices.
INDEX_FACTOR = 4


class _WalkStopped(Exception):
    """A group's walk was stopped (too many indices); the group is left out."""


class _Timeout(Exception):
    """Discovery ran past its deadline."""


@dataclass(frozen=True)
class Rejected:
    """A root layer whose group is left out, and why (one clause, merged across roots with the same reason)."""

    root: str
    reason: str


_UPDATES: dict[Any, Callable[[Any, Any], None]] = {
    tp.ops.OPTYPE.CONCAT: index_mapping.update_concat_index_mapping,
    tp.ops.OPTYPE.SPLIT: index_mapping.update_split_index_mapping,
    tp.ops.OPTYPE.RESHAPE: index_mapping.update_reshape_index_mapping,
    tp.ops.OPTYPE.UNBIND: index_mapping.update_unbind_index_mapping,
    tp.ops.OPTYPE.EXPAND: index_mapping.update_expand_index_mapping,
    tp.ops.OPTYPE.SLICE: index_mapping.update_slice_index_mapping,
}
_ORIGINAL_UPDATE = index_mapping.update_index_mapping


def _op_name(node: Any) -> str:
    fn = getattr(node, "grad_fn", None)
    return fn.name() if fn is not None and hasattr(fn, "name") else type(node.module).__name__


class _CappedFlatten:
    """A forward flatten index mapping that stops the walk instead of producing too many indices."""

    def __init__(self, inner: Any, graph: GuardedGraph, op: str) -> None:
        self.inner, self.graph, self.op = inner, graph, op

    def __call__(self, idxs: Sequence[Any]) -> Any:
        self.graph.check_deadline()
        produced = len(idxs) * self.inner._stride
        if produced > self.graph.index_cap:
            raise _WalkStopped(
                f"a {self.op} that Torch-Pruning maps as a flatten would turn its channels into {produced} indices "
                f"(more than {self.graph.index_cap}: the walk goes round a cycle of reshapes, as in window "
                "attention or a channel shuffle)"
            )
        return self.inner(idxs)


class GuardedGraph(tp.DependencyGraph):
    """Torch-Pruning's dependency graph whose index mappings cannot crash or grow without bound.

    Attributes:
        unmapped: Graph nodes whose index mapping failed (node -> why); groups through them are left out.
        index_cap: The most indices a flatten mapping may produce (``INDEX_FACTOR`` x the widest layer).
    """

    def __init__(self) -> None:
        super().__init__()
        self.unmapped: dict[Any, str] = {}
        self.index_cap = 0
        self.frozen = False  # during discovery nothing changes shape: mappings are computed once
        self.deadline: float | None = None

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _Timeout

    def build_dependency(self, model: nn.Module, *args: Any, **kwargs: Any) -> GuardedGraph:
        self.index_cap = INDEX_FACTOR * max([_widest(model), 1])
        super().build_dependency(model, *args, **kwargs)
        return self

    def update_mappings(self) -> None:
        """Torch-Pruning's ``update_index_mapping``, one node at a time: a failing node is recorded, not raised."""
        if self.frozen:
            return
        with warnings.catch_warnings():
            # its shape inference gives up on deep chains of parameter-free ops, which only leaves them unmapped
            warnings.filterwarnings("ignore", message="Maximum recursive depth reached")
            for node in list(self.module2node.values()):
                update = _UPDATES.get(node.type)
                if update is None or node in self.unmapped:
                    continue
                try:
                    update(self, node)
                except Exception as exc:  # Torch-Pruning's shape inference on an unexpected pattern
                    reshape = node.type == tp.ops.OPTYPE.RESHAPE
                    example = "; e.g. a channel shuffle: view, transpose, view" if reshape else ""
                    self.unmapped[node] = (f"a {_op_name(node)} whose channel mapping Torch-Pruning cannot build "
                                           f"({type(exc).__name__}{example})")
        for node in self.module2node.values():
            for dep in node.dependencies:
                for i, mapping in enumerate(dep.index_mapping):
                    if isinstance(mapping, index_mapping._FlattenIndexMapping) and not mapping.reverse:
                        op = _op_name(dep.target if dep.target.type == tp.ops.OPTYPE.RESHAPE else dep.source)
                        dep.index_mapping[i] = _CappedFlatten(mapping, self, op)


def _update_index_mapping(graph: Any) -> None:
    if isinstance(graph, GuardedGraph):
        graph.update_mappings()
    else:
        _ORIGINAL_UPDATE(graph)


# Torch-Pruning's graph calls ``index_mapping.update_index_mapping(self)`` while building and before every
# group; guarded graphs get the per-node, capped version, any other graph the original.
index_mapping.update_index_mapping = _update_index_mapping


def _widest(model: nn.Module) -> int:
    widths = [0]
    for module in model.modules():
        for attr in ("in_features", "out_features", "in_channels", "out_channels", "embed_dim", "num_features",
                     "num_channels"):
            value = getattr(module, attr, None)
            if isinstance(value, int):
                widths.append(value)
    return max(widths)


def find_groups(
    dg: GuardedGraph, ignored: Sequence[nn.Module], *, label: str, time_s: float = DISCOVERY_TIME_S
) -> tuple[list[Any], list[Rejected]]:
    """Every group of ``dg`` (as Torch-Pruning's ``get_all_groups``) within bounds, and the roots left out.

    Raises:
        AutoPruneError: the graph is too large or discovery ran past ``time_s`` (the layer pattern named).
    """
    nodes = len(dg.module2node)
    if nodes > MAX_GRAPH_NODES:
        raise AutoPruneError(
            f"group discovery for {label}: its graph has {nodes} nodes (more than {MAX_GRAPH_NODES}); use a smaller "
            "input shape or pass ignored_layers=[...] (PruneConfig) for its repeated blocks"
        )
    ignored_ids = {id(m) for m in (*ignored, *dg.IGNORED_LAYERS_IN_TRACING)}
    visited: set[int] = set()
    groups: list[Any] = []
    rejected: list[Rejected] = []
    start = time.monotonic()
    dg.frozen, dg.deadline = False, start + time_s
    try:
        dg.update_mappings()
        dg.frozen = True
        for module in list(dg.module2node):
            if id(module) in ignored_ids or id(module) in visited:
                continue
            if not isinstance(module, (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR)):
                continue
            pruner = dg.get_pruner_of_module(module)
            if pruner is None or pruner.get_out_channels(module) is None:
                continue
            dg.check_deadline()
            try:
                group = dg.get_pruning_group(module, pruner.prune_out_channels,
                                             list(range(pruner.get_out_channels(module))))
            except _WalkStopped as stop:
                rejected.append(Rejected(dg._module2name.get(module, type(module).__name__), str(stop)))
                continue
            except (_Timeout, AutoPruneError):
                raise
            except Exception as exc:  # Torch-Pruning's index mappings on a pattern they do not model
                rejected.append(Rejected(dg._module2name.get(module, type(module).__name__), _walk_failure(exc)))
                continue
            prunable = True
            for item in group:
                if dg.is_out_channel_pruning_fn(item.dep.handler):
                    visited.add(id(item.dep.target.module))
                    prunable = prunable and id(item.dep.target.module) not in ignored_ids
            if prunable:
                groups.append(group)
    except _Timeout:
        pattern = next(iter(dg.unmapped.values()), "repeated reshapes of the channel dimension")
        raise AutoPruneError(
            f"group discovery for {label} exceeded {time_s:.0f} s ({len(groups)} groups found): the layer pattern "
            f"({pattern}) is not supported; pass ignored_layers=[...] (PruneConfig) for the layers around it"
        ) from None
    finally:
        dg.frozen, dg.deadline = False, None
    return groups, rejected


def _walk_failure(exc: Exception) -> str:
    tb, where = exc.__traceback__, "its dependency walk"
    while tb is not None:
        if "torch_pruning" in tb.tb_frame.f_code.co_filename:
            where = tb.tb_frame.f_code.co_qualname.split(".<locals>")[0]
        tb = tb.tb_next
    return (f"Torch-Pruning's walk of its channels fails ({type(exc).__name__} in {where}): a split, concatenation "
            "or reshape of channels it does not model (e.g. a channel shuffle)")


def group_problem(dg: GuardedGraph, group: Any, name_of: dict[Any, str]) -> str | None:
    """Why Torch-Pruning's ``group`` cannot be pruned correctly (None: it can)."""
    for item in group:
        node = item.dep.target
        module = node.module
        name = name_of.get(module, type(module).__name__)
        if node in dg.unmapped:
            return f"its channels pass through {dg.unmapped[node]}"
        if isinstance(module, nn.MultiheadAttention):
            params = sorted(name_of[m] for m in (it.dep.target.module for it in group) if isinstance(m, nn.Parameter)
                            and m in name_of)
            extra = f" and the parameters {', '.join(params[:3])}" if params else ""
            return (
                f"it is the embedding size of nn.MultiheadAttention {name!r}{extra}: pruning it would regroup the "
                "attention heads and leave the model's hidden size (e.g. a ViT's hidden_dim) stale"
            )
        if not item.idxs:
            continue
        if isinstance(module, nn.Parameter):
            width: int | None = module.shape[node.pruning_dim] if node.pruning_dim is not None else None
        elif dg.is_out_channel_pruning_fn(item.dep.handler):
            width = dg.get_out_channels(module)
        else:
            width = dg.get_in_channels(module)
        if isinstance(width, int) and max(item.idxs) >= width:
            return (
                f"Torch-Pruning maps its channels to index {max(item.idxs)} of {name!r}, which has {width}: the ops "
                "between them (e.g. attention with a relative position bias) are not supported"
            )
    return None
