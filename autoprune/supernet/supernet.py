"""The weight-sharing supernet: every candidate is the top-k channels of every group of one model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from autoprune._types import Batch
from autoprune.engine.importance import get_importance
from autoprune.engine.plan import STRUCTURED, PrunePlan, apply_plan
from autoprune.engine.selection import select_kept
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError, CheckpointError
from autoprune.models import save_checkpoint
from autoprune.models.checkpoint import check_fits, read_checkpoint
from autoprune.supernet.bn import adaptive_bn
from autoprune.supernet.gates import ChannelGates

Counts = Mapping[str, int]


class SubnetSampler(Protocol):
    """What sandwich training needs from a search space (``autoprune.search_spaces.SearchSpace`` fits)."""

    def largest(self) -> dict[str, int]: ...

    def smallest(self) -> dict[str, int]: ...

    def random_choice(self, rng: np.random.Generator) -> dict[str, int]: ...


class Supernet(nn.Module):
    """A trained model whose sub-networks share its weights.

    Channels of every group are ranked once by an importance criterion; a configuration (kept channel
    count per group) activates the top-k channels of each group through output-channel gates.

    Args:
        model: The trained base model; the supernet trains these weights in place.
        input_shape: ``(N, C, H, W)`` of the inputs.
        criterion: Importance criterion for the fixed ranking (``l1`` by default).
        calibration: Batches for data-driven criteria.
        scores: Precomputed per-group scores (when loading a saved supernet); skips ranking.
        ignored_layers: Module names never to prune.
    """

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        *,
        criterion: str = "l1",
        calibration: Iterable[Batch] | None = None,
        scores: Mapping[str, torch.Tensor] | None = None,
        ignored_layers: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.model = model
        self.input_shape = (1, *input_shape[1:])
        self.criterion = criterion
        self.structure = ModelStructure(model, self.input_shape, ignored_layers=ignored_layers)
        if scores is None:
            importance = get_importance(criterion)
            if importance.needs_data:
                importance.prepare(model, self.structure, calibration)
            scores = {g.name: importance(g) for g in self.structure.groups}
        missing = [g.name for g in self.structure.groups if g.name not in scores]
        if missing:
            raise CheckpointError(f"supernet scores are missing for groups {missing[:3]}: it belongs to another model")
        self.scores = {g.name: scores[g.name].detach().float().cpu() for g in self.structure.groups}
        self.gates = ChannelGates(self.structure)
        self._kept_cache: dict[tuple[str, int], list[int]] = {}

    # --------------------------------------------------------------- configs
    @property
    def group_names(self) -> list[str]:
        return self.structure.group_names

    def kept_indices(self, group: str, count: int) -> list[int]:
        """The ``count`` top-ranked channels of ``group`` (sorted); nested in ``count``."""
        key = (group, count)
        if key not in self._kept_cache:
            g = self.structure.group(group)
            self._kept_cache[key] = select_kept(g, self.scores[group], count)
        return self._kept_cache[key]

    def _validate(self, counts: Counts) -> None:
        for name, k in counts.items():
            g = self.structure.group(name)
            if not 1 <= k <= g.channels:
                raise AutoPruneError(f"config keeps {k} channels of group {name!r}, which has {g.channels}")

    def plan(self, counts: Counts) -> PrunePlan:
        """The engine plan that keeps the top-``counts[g]`` channels of every group (others whole)."""
        self._validate(counts)
        kept = {
            g.name: self.kept_indices(g.name, counts.get(g.name, g.channels)) for g in self.structure.groups
        }
        return PrunePlan(
            input_shape=self.input_shape,
            granularity=STRUCTURED,
            channels={g.name: g.channels for g in self.structure.groups},
            kept=kept,
            meta={"criterion": self.criterion, "source": "supernet", "counts": dict(counts)},
        )

    def activate(self, counts: Counts | None) -> None:
        """Gate the shared model to the sub-network ``counts`` (``None``: the full model)."""
        if counts is None:
            self.gates.set(None)
            return
        self._validate(counts)
        kept = {}
        for name, k in counts.items():
            g = self.structure.group(name)
            if k < g.channels:
                mask = torch.zeros(g.channels, dtype=torch.bool)
                mask[self.kept_indices(name, k)] = True
                kept[name] = mask
        self.gates.set(kept)

    @contextmanager
    def active(self, counts: Counts | None) -> Iterator[Supernet]:
        """Context manager form of :meth:`activate`; restores the full model afterwards."""
        self.activate(counts)
        try:
            yield self
        finally:
            self.gates.set(None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def predict_macs(self, counts: Counts) -> int:
        return self.structure.predict_macs(counts)

    # ------------------------------------------------------------ extraction
    def extract(
        self,
        counts: Counts,
        *,
        calibration: Iterable[Batch] | None = None,
        bn_batches: int = 10,
    ) -> nn.Module:
        """A physically pruned copy of the sub-network ``counts`` with the shared weights.

        Args:
            counts: Kept channels per group (groups not given stay whole).
            calibration: If given, BatchNorm statistics of the extracted model are re-estimated on
                ``bn_batches`` of these batches (adaptive BN); otherwise the supernet's are kept.
            bn_batches: Number of calibration batches.
        """
        plan = self.plan(counts)
        with self.gates.detached():
            pruned = apply_plan(self.model, plan)
        if calibration is not None:
            adaptive_bn(pruned, calibration, bn_batches)
        return pruned.eval()

    # ---------------------------------------------------------------- saving
    def save(self, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
        """Weights, channel ranking and provenance in one weights-only checkpoint (atomic)."""
        full = {
            **(meta or {}),
            "criterion": self.criterion,
            "input_shape": list(self.input_shape),
            "scores": {k: v.tolist() for k, v in self.scores.items()},
            "kind": "autoprune-supernet",
        }
        return save_checkpoint(self.model, path, full)

    @classmethod
    def load(cls, path: str | Path, model: nn.Module) -> tuple[Supernet, dict[str, Any]]:
        """Rebuild a supernet saved by :meth:`save` around a fresh ``model`` of the same architecture.

        Raises:
            CheckpointError: unreadable file, not a supernet, or another architecture.
        """
        state, meta = read_checkpoint(path)
        meta = dict(meta)
        if meta.get("kind") != "autoprune-supernet":
            raise CheckpointError(f"{path} is not an autoprune supernet (train one with `autoprune supernet`)")
        check_fits(model, state, meta, Path(path))  # names the --model it was trained for
        model.load_state_dict(state)
        scores = {k: torch.tensor(v) for k, v in meta["scores"].items()}
        net = cls(model, tuple(meta["input_shape"]), criterion=str(meta.get("criterion", "l1")), scores=scores)
        return net, meta


