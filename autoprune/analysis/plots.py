"""PNG figures of a run folder (matplotlib, no display needed).

Figures are built on :class:`matplotlib.figure.Figure` directly (the Agg canvas, never pyplot's global
state), so they are safe in tests, threads and headless machines.

- ``accuracy_vs_macs``: validation accuracy of every evaluated candidate of the trial log, the Pareto
  front, and from ``report.json`` the winner and the uniform reference at their re-scored validation
  accuracy (± standard error) and the dense model's validation accuracy. One split on one axis: test
  accuracies are in the HTML page's table, never on this figure;
- ``keep_ratios``: the winner's keep ratio per group (``report.json`` ``keep_ratios`` or ``plan.json``)
  in the order of the search space's groups, with the space's bounds and the uniform reference;
- ``best_so_far``: best feasible accuracy against the number of evaluations;
- ``sensitivity``: one curve per group (accuracy drop and KL divergence against keep ratio).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autoprune.analysis.rundir import RunData, TrialPoint, load_run, report_get
from autoprune.analysis.sensitivity import SensitivityTable
from autoprune.search.base import pareto_front

PARETO_LABEL = "Pareto front"
ACCURACY_AXIS_LABEL = "validation accuracy"
BOUNDS_LABEL = "search-space bounds"
UNIFORM_RATIOS_LABEL = "uniform reference"


def _figure(width: float = 7.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


#: The searchers' own Pareto rule (:func:`autoprune.search.pareto_front`), on the trials of a run folder.
pareto_points = pareto_front


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ValPoint:
    """A candidate of the report placed on the validation axis: MACs ratio, validation accuracy and its SE."""

    label: str
    macs_ratio: float
    accuracy: float
    se: float | None = None


def _val_point(label: str, entry: Any, acc_key: str = "val_accuracy") -> ValPoint | None:
    acc, ratio = _num(report_get(entry, acc_key)), _num(report_get(entry, "macs_ratio"))
    if acc is None or ratio is None:
        return None
    return ValPoint(label, ratio, acc, _num(report_get(entry, f"{acc_key}_se")))


def winner_val_point(report: Mapping[str, Any] | None) -> ValPoint | None:
    """The exported winner at its validation accuracy, or None where the report has none.

    In order: the re-scored winner (``winner``, search), the pruned model's own validation accuracy
    (``pruned.val_accuracy``, sample: after finetuning), the search's best trial (older search reports).
    """
    point = _val_point("winner (re-scored val)", report_get(report, "winner"))
    if point is None and _num(report_get(report, "pruned", "val_accuracy")) is not None:
        label = "winner (finetuned, val)" if report_get(report, "finetuned") else "winner (val)"
        point = _val_point(label, {"val_accuracy": report_get(report, "pruned", "val_accuracy"),
                                   "macs_ratio": report_get(report, "macs_ratio")})  # fmt: skip
    if point is None:
        point = _val_point("winner (search val)", report_get(report, "search", "best", "result"), "accuracy")
    return point


def uniform_val_point(report: Mapping[str, Any] | None) -> ValPoint | None:
    """The uniform reference at its validation accuracy: re-scored (``uniform_rescored``) where the report has it."""
    return (_val_point("uniform (re-scored val)", report_get(report, "uniform_rescored"))
            or _val_point("uniform (val)", report_get(report, "reference", "uniform"))
            or _val_point("uniform (val)", report_get(report, "subnets", "uniform_at_target")))  # fmt: skip


def _mark(ax: Any, point: ValPoint, **style: Any) -> None:
    ax.scatter([point.macs_ratio], [point.accuracy], label=point.label, **style)
    if point.se:
        ax.errorbar([point.macs_ratio], [point.accuracy], yerr=[point.se], fmt="none", capsize=3, lw=1,
                    color=style.get("color"), zorder=style.get("zorder", 3))  # fmt: skip


def plot_accuracy_vs_macs(points: Sequence[TrialPoint], report: Mapping[str, Any] | None = None) -> Figure:
    """Validation accuracy against MACs ratio: every evaluated candidate, the Pareto front and references.

    Everything on the y axis is validation accuracy: the trials' search scores, the winner and the uniform
    reference re-scored at full fidelity (± one standard error), the dense model where its validation
    accuracy is recorded. Test accuracy is not plotted (the HTML page's table has it).
    """
    fig = _figure(8.5, 4.5)
    ax = fig.add_subplot()

    def xy(keep: Any) -> tuple[list[float], list[float]]:
        sel = [p for p in points if p.accuracy is not None and p.macs_ratio is not None and keep(p)]
        return [p.macs_ratio or 0.0 for p in sel], [p.accuracy or 0.0 for p in sel]

    for state, color, alpha in (("complete", "tab:blue", 0.5), ("pruned", "tab:gray", 0.4)):
        xs, ys = xy(lambda p, state=state: p.state == state and p.feasible)
        if xs:
            ax.scatter(xs, ys, s=16, color=color, alpha=alpha, label=f"{state} trials")
    xs, ys = xy(lambda p: not p.feasible)
    if xs:
        ax.scatter(xs, ys, s=16, marker="x", color="tab:red", label="over budget")
    front = pareto_points(points)
    if front:
        xs, ys = [p.macs_ratio or 0.0 for p in front], [p.accuracy or 0.0 for p in front]
        ax.plot(xs, ys, "-o", color="tab:orange", ms=5, label=PARETO_LABEL)
    dense_acc = _num(report_get(report, "dense", "val_accuracy"))
    if dense_acc is not None:
        ax.axhline(dense_acc, color="black", ls="--", lw=1, label="dense (val)")
    uniform = uniform_val_point(report)
    if uniform is not None:
        _mark(ax, uniform, marker="s", s=50, color="tab:green", zorder=3)
    winner = winner_val_point(report)
    if winner is not None:
        _mark(ax, winner, marker="*", s=160, color="tab:purple", zorder=4)
    target, metric = report_get(report, "space", "target"), report_get(report, "space", "metric")
    if _num(target) is not None and metric in (None, "macs"):  # a params or latency budget is not on this axis
        ax.axvline(float(target), color="tab:red", ls=":", lw=1, label="budget")
    ax.set_xlabel("MACs (fraction of dense)")
    ax.set_ylabel(ACCURACY_AXIS_LABEL)
    ax.set_title("Validation accuracy vs MACs of every evaluated candidate")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def _space_groups(report: Mapping[str, Any] | None) -> Mapping[str, Any]:
    groups = report_get(report, "space", "groups")
    return groups if isinstance(groups, Mapping) else {}


def group_order(ratios: Mapping[str, float], report: Mapping[str, Any] | None = None) -> list[str]:
    """The groups of ``ratios`` in the order of the report's search space, then any others as given."""
    order = [g for g in _space_groups(report) if g in ratios]
    return order + [g for g in ratios if g not in order]


def space_bounds(report: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """Lowest and highest keep ratio the search space allows, per group (from ``space.groups``)."""
    bounds = {}
    for name, group in _space_groups(report).items():
        counts, channels = report_get(group, "counts"), _num(report_get(group, "channels"))
        if isinstance(counts, list) and counts and channels:
            bounds[name] = (min(counts) / channels, max(counts) / channels)
    return bounds


def uniform_keep_ratios(report: Mapping[str, Any] | None) -> dict[str, float]:
    """Keep ratio per group of the uniform reference (its counts over the space's channels)."""
    counts = report_get(report, "uniform_rescored", "counts") or report_get(report, "reference", "uniform", "counts")
    if not isinstance(counts, Mapping):
        return {}
    channels = {name: _num(report_get(group, "channels")) for name, group in _space_groups(report).items()}
    return {g: c / ch for g, c in counts.items() if (ch := channels.get(g)) and _num(c) is not None}


def plot_keep_ratios(ratios: Mapping[str, float], report: Mapping[str, Any] | None = None, *,
                     title: str = "Keep ratio per group of the winner") -> Figure:  # fmt: skip
    """One bar per group in the search space's order, with the space's bounds and the uniform reference."""
    names = group_order(ratios, report)
    fig = _figure(max(6.0, 0.45 * len(names) + 3), 4.5)
    ax = fig.add_subplot()
    xs = range(len(names))
    ax.bar(xs, [ratios[n] for n in names], color="tab:blue", alpha=0.8, label="winner")
    bounds = space_bounds(report)
    bx = [i for i, n in enumerate(names) if n in bounds]
    if bx:
        lo, hi = [bounds[names[i]][0] for i in bx], [bounds[names[i]][1] for i in bx]
        ax.vlines(bx, lo, hi, color="black", lw=1, label=BOUNDS_LABEL)
        ax.scatter(bx + bx, lo + hi, marker="_", s=80, color="black", lw=1)
    uniform = uniform_keep_ratios(report)
    ux = [i for i, n in enumerate(names) if n in uniform]
    if ux:
        ax.scatter(ux, [uniform[names[i]] for i in ux], marker="D", s=28, color="tab:green", zorder=3,
                   label=UNIFORM_RATIOS_LABEL)  # fmt: skip
    ax.set_xticks(list(xs), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_ylabel("keep ratio")
    ax.set_title(title)
    if bx or ux:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def best_so_far(points: Sequence[TrialPoint]) -> list[tuple[int, float]]:
    """(evaluation count, best complete feasible accuracy so far), one entry per trial once one exists."""
    out, best = [], None
    for i, p in enumerate(sorted(points, key=lambda p: p.number)):
        if p.state == "complete" and p.feasible and p.accuracy is not None and (best is None or p.accuracy > best):
            best = p.accuracy
        if best is not None:
            out.append((i + 1, best))
    return out


def plot_best_so_far(points: Sequence[TrialPoint]) -> Figure:
    """Best feasible accuracy against the number of evaluations."""
    fig = _figure(6.5, 4.0)
    ax = fig.add_subplot()
    curve = best_so_far(points)
    if curve:
        ax.step([c[0] for c in curve], [c[1] for c in curve], where="post", color="tab:blue")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best accuracy so far")
    ax.set_title("Best feasible candidate vs evaluations")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_sensitivity(table: SensitivityTable) -> Figure:
    """Accuracy drop (left) and KL divergence (right) against keep ratio, one curve per group."""
    fig = _figure(11.0, 4.5)
    left, right = fig.subplots(1, 2)
    colors = matplotlib.colormaps["tab20"]
    for i, name in enumerate(table.groups):
        curve = table.curve(name)
        xs = [r.actual_keep_ratio for r in curve]
        style = {"color": colors(i % 20), "ls": ("-", "--", ":")[(i // 20) % 3], "marker": "o", "ms": 3}
        left.plot(xs, [r.accuracy_drop for r in curve], label=name, **style)
        right.plot(xs, [r.kl for r in curve], label=name, **style)
    left.set_ylabel("validation accuracy drop")
    right.set_ylabel("KL(dense || pruned), nats")
    for ax in (left, right):
        ax.set_xlabel("keep ratio of the group (others whole)")
        ax.grid(alpha=0.3)
    right.legend(fontsize=7, loc="upper right", ncol=2)
    fig.suptitle("Layer sensitivity")
    fig.tight_layout()
    return fig


def run_figures(run: RunData) -> dict[str, Figure]:
    """Every figure the run folder's files allow, by name (see the module docstring)."""
    figures: dict[str, Figure] = {}
    if run.trials:
        figures["accuracy_vs_macs"] = plot_accuracy_vs_macs(run.trials, run.report)
        figures["best_so_far"] = plot_best_so_far(run.trials)
    if run.keep_ratios:
        figures["keep_ratios"] = plot_keep_ratios(run.keep_ratios, run.report)
    if run.sensitivity is not None and run.sensitivity.rows:
        figures["sensitivity"] = plot_sensitivity(run.sensitivity)
    return figures


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG."""
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def plot_run(folder: str | Path) -> dict[str, Path]:
    """Write every figure of a run folder as ``folder/figures/<name>.png``; returns the paths by name.

    Raises:
        AutoPruneError: see :func:`autoprune.analysis.rundir.load_run`.
    """
    run = load_run(folder)
    figures = run_figures(run)
    if not figures:
        return {}
    fig_dir = run.folder / "figures"
    fig_dir.mkdir(exist_ok=True)
    return {name: save_png(fig, fig_dir / f"{name}.png") for name, fig in figures.items()}
