"""Layer sensitivity: prune one group alone, measure the accuracy drop and the output KL divergence.

For every group and every keep ratio of a grid, the group keeps its top-ranked channels (the same
ranking a supernet uses) while every other group stays whole; the pruned model is scored on validation
batches against the dense model. The table says which groups tolerate pruning, gives per-group lower
bounds on the keep ratio, and seeds searches with sensitivity-guided candidates at a budget.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from autoprune._types import Batch
from autoprune.engine.rounding import RoundTo, round_count
from autoprune.errors import AutoPruneError
from autoprune.search_spaces import SearchSpace
from autoprune.supernet import Supernet

CSV_FIELDS = ("group", "keep_ratio", "kept", "channels", "actual_keep_ratio", "accuracy", "accuracy_drop", "kl")
DEFAULT_RATIOS: tuple[float, ...] = (0.125, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class SensitivityRow:
    """One cell of the sensitivity table: group ``group`` pruned alone to ``kept`` channels.

    Attributes:
        group: Group name.
        keep_ratio: Requested keep ratio (from the grid).
        kept: Channels actually kept (the ratio rounded to the group's channel step).
        channels: Channels of the dense group.
        actual_keep_ratio: ``kept / channels``.
        accuracy: Validation top-1 of the pruned model (0..1).
        accuracy_drop: Dense validation accuracy minus ``accuracy`` (negative when pruning helped).
        kl: Mean KL(dense || pruned) of the softmax outputs over the validation samples (nats).
    """

    group: str
    keep_ratio: float
    kept: int
    channels: int
    actual_keep_ratio: float
    accuracy: float
    accuracy_drop: float
    kl: float


@dataclass
class SensitivityTable:
    """Every measured cell plus the dense reference.

    Attributes:
        rows: The cells, grouped by group in model order, ratios ascending.
        dense_accuracy: Validation accuracy of the dense model on the same batches (None when loaded
            from a CSV, which does not hold it).
    """

    rows: list[SensitivityRow]
    dense_accuracy: float | None = None

    @property
    def groups(self) -> list[str]:
        """Group names in the table's order."""
        return list(dict.fromkeys(r.group for r in self.rows))

    def curve(self, group: str) -> list[SensitivityRow]:
        """The rows of ``group`` sorted by kept channels.

        Raises:
            AutoPruneError: ``group`` is not in the table.
        """
        rows = sorted((r for r in self.rows if r.group == group), key=lambda r: r.kept)
        if not rows:
            raise AutoPruneError(f"group {group!r} is not in the sensitivity table; it has {', '.join(self.groups)}")
        return rows

    def save_csv(self, path: str | Path) -> Path:
        """Write ``sensitivity.csv`` (one row per cell, columns :data:`CSV_FIELDS`)."""
        path = Path(path)
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            writer.writeheader()
            for r in self.rows:
                writer.writerow(dataclasses.asdict(r))
        return path

    @classmethod
    def load_csv(cls, path: str | Path) -> SensitivityTable:
        """Read a table written by :meth:`save_csv`.

        Raises:
            AutoPruneError: missing file or columns, or values that are not numbers.
        """
        path = Path(path)
        if not path.is_file():
            raise AutoPruneError(f"{path} does not exist; write one with `autoprune sensitivity`")
        rows = []
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = set(CSV_FIELDS) - set(reader.fieldnames or ())
            if missing:
                raise AutoPruneError(f"{path} lacks the columns {sorted(missing)}; it is not a sensitivity.csv")
            for i, rec in enumerate(reader):
                try:
                    rows.append(SensitivityRow(
                        group=rec["group"], keep_ratio=float(rec["keep_ratio"]), kept=int(rec["kept"]),
                        channels=int(rec["channels"]), actual_keep_ratio=float(rec["actual_keep_ratio"]),
                        accuracy=float(rec["accuracy"]), accuracy_drop=float(rec["accuracy_drop"]),
                        kl=float(rec["kl"]),
                    ))  # fmt: skip
                except ValueError as exc:
                    raise AutoPruneError(f"{path}: row {i + 2} is malformed ({exc})") from None
        return cls(rows)


def _outputs(model: nn.Module, batches: Sequence[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        logits = torch.cat([model(x) for x, _ in batches])
    return F.log_softmax(logits.float(), dim=1), torch.cat([y for _, y in batches])


def kl_divergence(dense_log_probs: torch.Tensor, log_probs: torch.Tensor) -> float:
    """Mean KL(dense || pruned) over samples, in nats, from log-softmax outputs (never negative)."""
    kl = F.kl_div(log_probs, dense_log_probs, log_target=True, reduction="batchmean")
    return max(0.0, float(kl))


def measure_sensitivity(
    model: nn.Module,
    input_shape: tuple[int, ...],
    val_batches: Iterable[Batch],
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    groups: Sequence[str] | None = None,
    criterion: str = "l1",
    calibration: Iterable[Batch] | None = None,
    bn_batches: int = 0,
    round_to: RoundTo = 1,
    supernet: Supernet | None = None,
    device: torch.device | str = "cpu",
    on_row: Callable[[SensitivityRow], None] | None = None,
) -> SensitivityTable:
    """Prune every group alone to every keep ratio of ``ratios`` and score it against the dense model.

    Args:
        model: The trained dense model (left unchanged).
        input_shape: ``(N, C, H, W)`` of the inputs.
        val_batches: Validation batches (from the training split), kept in memory.
        ratios: Keep ratios in (0, 1] to measure per group.
        groups: Group names to measure (default: every prunable group).
        criterion: Importance criterion ranking the channels (the top-ranked ones are kept).
        calibration: Batches for data-driven criteria and adaptive BatchNorm.
        bn_batches: Re-estimate BatchNorm statistics of every pruned model on this many calibration
            batches (0: keep the dense statistics). A group kept whole with ``bn_batches > 0`` reuses the
            dense outputs: nothing was pruned, so re-estimating would only add sampling noise.
        round_to: Kept channels are rounded to multiples of this (and of the group's channel blocks); a
            :class:`~autoprune.engine.rounding.Rounding` gives each group its own.
        supernet: An existing :class:`Supernet` over ``model`` (its ranking is reused) instead of a new one.
        device: Where to evaluate.
        on_row: Called after every measured cell (progress).

    Returns:
        The table; ``accuracy_drop`` and ``kl`` are exactly 0 where the group is whole and ``bn_batches == 0``
        up to float noise.

    Raises:
        AutoPruneError: ratios outside (0, 1], unknown group names, or adaptive BN without calibration data.
    """
    grid = sorted({float(r) for r in ratios})
    if not grid or any(not (0.0 < r <= 1.0) or math.isnan(r) for r in grid):
        raise AutoPruneError(f"sensitivity ratios {list(ratios)} must be keep ratios in (0, 1], e.g. 0.25,0.5,0.75,1")
    calib = None if calibration is None else list(islice(calibration, max(bn_batches, 8)))
    if bn_batches > 0 and not calib:
        raise AutoPruneError("adaptive BN (bn_batches > 0) needs calibration batches; pass calibration=...")
    # wrap a copy: a Supernet attaches gates to the model it wraps
    net = supernet or Supernet(copy.deepcopy(model), input_shape, criterion=criterion, calibration=calib)
    names = list(groups) if groups is not None else net.group_names
    for name in names:
        net.structure.group(name)  # an unknown name raises with the valid ones
    dev = torch.device(device)
    batches = [(x.to(dev), y.to(dev)) for x, y in val_batches]
    if not batches:
        raise AutoPruneError("sensitivity needs at least one validation batch")
    dense_model = net.extract({}, calibration=None).to(dev).eval()
    dense_lp, targets = _outputs(dense_model, batches)
    dense_acc = float((dense_lp.argmax(1) == targets).float().mean())
    rows: list[SensitivityRow] = []
    for name in names:
        g = net.structure.group(name)
        done: dict[int, tuple[float, float]] = {}
        for ratio in grid:
            kept = round_count(g, ratio * g.channels, round_to)  # the group's own constraints (blocks, branches)
            if kept not in done:
                if kept == g.channels and bn_batches > 0:
                    done[kept] = (dense_acc, 0.0)
                else:
                    pruned = net.extract({name: kept}, calibration=calib if bn_batches > 0 else None,
                                         bn_batches=bn_batches).to(dev).eval()
                    lp, _ = _outputs(pruned, batches)
                    done[kept] = (float((lp.argmax(1) == targets).float().mean()), kl_divergence(dense_lp, lp))
            acc, kl = done[kept]
            row = SensitivityRow(name, ratio, kept, g.channels, kept / g.channels, acc, dense_acc - acc, kl)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return SensitivityTable(rows, dense_accuracy=dense_acc)


def keep_ratio_lower_bounds(
    table: SensitivityTable, *, max_drop: float = 0.01, metric: str = "accuracy_drop"
) -> dict[str, float]:
    """Per group, the smallest measured keep ratio from which on every larger ratio stays within ``max_drop``.

    Args:
        table: A sensitivity table.
        max_drop: Largest tolerated ``metric`` (accuracy drop as a fraction, or KL in nats).
        metric: ``accuracy_drop`` or ``kl``.

    Returns:
        ``{group: actual keep ratio}``; 1.0 for a group whose every pruned ratio exceeds ``max_drop``.

    Raises:
        AutoPruneError: unknown ``metric``.
    """
    if not (isinstance(max_drop, (int, float)) and max_drop >= 0):
        raise AutoPruneError(f"max_drop={max_drop!r} must be >= 0 (the largest tolerated {metric}; e.g. 0.01)")
    if metric not in ("accuracy_drop", "kl"):
        raise AutoPruneError(f"metric {metric!r} must be accuracy_drop or kl")
    bounds = {}
    for name in table.groups:
        bound = 1.0
        for row in reversed(table.curve(name)):  # widest first; stop at the first ratio that hurts too much
            if getattr(row, metric) > max_drop:
                break
            bound = row.actual_keep_ratio
        bounds[name] = bound
    return bounds


def sensitivity_seed_ratios(
    table: SensitivityTable,
    space: SearchSpace,
    *,
    max_drops: Sequence[float] = (0.005, 0.01, 0.02, 0.05),
    metric: str = "accuracy_drop",
) -> list[dict[str, float]]:
    """Sensitivity-guided candidates at the space's budget, as keep ratios (for Optuna's ``enqueue_trial``).

    For every tolerance in ``max_drops`` the per-group lower bounds (:func:`keep_ratio_lower_bounds`) are
    the request: robust groups may go down to their bound, sensitive ones stay near whole. The request is
    fitted to the budget by :meth:`SearchSpace.project` (scaled up keeping its shape when it spends less
    than the budget, shrunk when it spends more). Groups of the space missing from the table may go down
    to their minimum choice.

    Args:
        table: A sensitivity table (groups not in the space are ignored).
        space: The search space whose budget the seeds must meet.
        max_drops: Tolerances, one seed each (duplicates removed).
        metric: ``accuracy_drop`` or ``kl``.

    Returns:
        Distinct feasible keep-ratio vectors ``{group: ratio}`` over the space's groups.
    """
    seeds: list[dict[str, float]] = []
    for max_drop in max_drops:
        bounds = keep_ratio_lower_bounds(table, max_drop=max_drop, metric=metric)
        floor = {g.name: max(bounds.get(g.name, 0.0), g.ratio(g.min_count)) for g in space.groups}
        ratios = space.ratios(space.project(floor))
        if ratios not in seeds:
            seeds.append(ratios)
    return seeds


def group_damage(table: SensitivityTable, space: SearchSpace, metric: str = "kl") -> dict[str, np.ndarray]:
    """Per searched group, the ``metric`` interpolated at every allowed choice (0 for groups not measured).

    The sampling pipeline turns these into choice probabilities (low damage: pruned more often).
    """
    out = {}
    for g in space.groups:
        if g.name not in table.groups:
            out[g.name] = np.zeros(len(g.choices))
            continue
        curve = table.curve(g.name)
        xs = np.array([r.actual_keep_ratio for r in curve] + [1.0])
        ys = np.array([getattr(r, metric) for r in curve] + [0.0])
        order = np.argsort(xs, kind="stable")
        vals = np.interp([g.ratio(c) for c in g.choices], xs[order], ys[order])
        out[g.name] = np.maximum(vals, 0.0)
    return out
