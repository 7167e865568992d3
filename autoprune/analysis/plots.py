"""PNG figures of a run folder (matplotlib, no display needed).

Figures are built on :class:`matplotlib.figure.Figure` directly (the Agg canvas, never pyplot's global
state), so they are safe in tests, threads and headless machines.

- ``accuracy_vs_macs``: every evaluated candidate of ``trials.csv``, the Pareto front, the dense model and
  the uniform reference (from ``report.json``), and the winner;
- ``keep_ratios``: the winner's keep ratio per group (``report.json`` ``keep_ratios`` or ``plan.json``);
- ``best_so_far``: best feasible accuracy against the number of evaluations;
- ``sensitivity``: one curve per group (accuracy drop and KL divergence against keep ratio).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autoprune.analysis.rundir import RunData, TrialPoint, load_run
from autoprune.analysis.sensitivity import SensitivityTable

PARETO_LABEL = "Pareto front"


def _figure(width: float = 7.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def pareto_points(points: Sequence[TrialPoint]) -> list[TrialPoint]:
    """Complete, feasible trials not dominated in (accuracy up, MACs down), sorted by MACs.

    The same rule as :func:`autoprune.search.pareto_front`: of trials with equal accuracy and MACs only
    the first is kept.
    """
    done = [p for p in points if p.state == "complete" and p.feasible and p.accuracy is not None and p.macs is not None]
    front: list[TrialPoint] = []
    for p in sorted(done, key=lambda p: (p.macs, -(p.accuracy or 0.0), p.number)):
        if not front or (p.accuracy or 0.0) > (front[-1].accuracy or 0.0):
            front.append(p)
    return front


def _get(data: Mapping[str, Any] | None, *keys: str) -> Any:
    """``data[k1][k2]...`` or None where any level is missing or not a mapping."""
    value: Any = data
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def plot_accuracy_vs_macs(points: Sequence[TrialPoint], report: Mapping[str, Any] | None = None) -> Figure:
    """Accuracy against MACs ratio for every evaluated candidate, with the Pareto front and references."""
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
    dense = _get(report, "dense")
    dense_acc = _get(dense, "val_accuracy")
    dense_label = "dense (val)"
    if dense_acc is None:
        dense_acc, dense_label = _get(dense, "accuracy"), "dense (test)"
    if dense_acc is not None:
        ax.axhline(dense_acc, color="black", ls="--", lw=1, label=dense_label)
    uniform = _get(report, "reference", "uniform") or _get(report, "subnets", "uniform_at_target")
    if _get(uniform, "val_accuracy") is not None and _get(uniform, "macs_ratio") is not None:
        ax.scatter([uniform["macs_ratio"]], [uniform["val_accuracy"]], marker="s", s=50, color="tab:green",
                   label="uniform (val)", zorder=3)  # fmt: skip
    pruned_acc, ratio = _get(report, "pruned", "accuracy"), _get(report, "macs_ratio")
    if pruned_acc is not None and ratio is not None:
        ax.scatter([ratio], [pruned_acc], marker="*", s=160, color="tab:purple", label="winner (test)", zorder=4)
    target = _get(report, "space", "target")
    if isinstance(target, (int, float)):
        ax.axvline(float(target), color="tab:red", ls=":", lw=1, label="budget")
    ax.set_xlabel("MACs (fraction of dense)")
    ax.set_ylabel("accuracy (trials: validation score)")
    ax.set_title("Accuracy vs MACs of every evaluated candidate")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_keep_ratios(ratios: Mapping[str, float], title: str = "Keep ratio per group of the winner") -> Figure:
    """One bar per group (model order as given)."""
    fig = _figure(max(6.0, 0.45 * len(ratios) + 2), 4.5)
    ax = fig.add_subplot()
    names = list(ratios)
    ax.bar(range(len(names)), [ratios[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_ylabel("keep ratio")
    ax.set_title(title)
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
        figures["keep_ratios"] = plot_keep_ratios(run.keep_ratios)
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
