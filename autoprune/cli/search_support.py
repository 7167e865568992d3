"""What ``autoprune search`` needs besides the search itself: option parsing, worker processes, the
side-by-side summary, figures and TensorBoard (kept apart so that the command reads as its steps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoprune.cli.common import console
from autoprune.errors import AutoPruneError

if TYPE_CHECKING:
    from autoprune.search.winner import WinnerChoice
    from autoprune.search_spaces import SearchSpace


def parse_searcher_options(items: list[str]) -> dict[str, Any]:
    """``--searcher-option key=value`` (value parsed as JSON when it can be, else kept as text)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AutoPruneError(f"--searcher-option {item!r} must look like key=value, e.g. warmup=10")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def side_by_side(model: str, n_trials: int, searcher: str, dense: dict[str, Any], uniform: dict[str, Any],
                  pruned: dict[str, Any], choice: WinnerChoice, space: SearchSpace) -> str:
    """Dense, uniform and the winner side by side, as plain aligned text (fits any terminal or log).

    Test and validation accuracy with their standard errors, MACs (and the fraction of dense), params,
    latency at batch 1 (eager, and in the deploy form).
    """

    def acc(m: dict[str, Any]) -> str:
        se = m.get("accuracy_se")
        return "-" if m.get("accuracy") is None else f"{m['accuracy']:.4f}" + (f" ± {se:.4f}" if se else "")

    def val(r: Any) -> str:
        return f"{r.score.accuracy:.4f} ± {r.score.accuracy_se:.4f}"

    winner = "winner (uniform)" if choice.winner is choice.uniform else "winner"
    header = ("", "test accuracy", "val accuracy", "MACs", "params", "latency ms b1 (deploy)")
    rows = [header]
    for name, m, v in (("dense", dense, "-"), ("uniform", uniform, val(choice.uniform)),
                       (winner, pruned, val(choice.winner))):
        rows.append((name, acc(m), v, f"{m['macs'] / 1e6:.2f}M ({m['macs'] / dense['macs']:.3f})",
                     f"{m['params'] / 1e3:.1f}k",
                     "-" if "latency_ms" not in m else f"{m['latency_ms']:.2f} ({m['deploy_latency_ms']:.2f})"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"{model} at {space.metric} <= {space.target:g}: winner of {n_trials} trials ({searcher}), no finetuning"]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
              for r in rows]
    return "\n".join(lines)


def spawn_workers(n: int, out: Path, supernet: Path, options: dict[str, Any]) -> list[subprocess.Popen[bytes]]:
    """N more processes of this same command on the same study (they skip export and report)."""
    argv = list(sys.argv[1:])
    extra = ["--worker", "--no-progress", "--supernet", str(supernet.resolve()), "--out", str(out),
             "--storage", str(options["storage"]), "--study-name", str(options["study_name"])]
    procs = []
    for i in range(n):
        log = (out / f"worker-{i + 1}.log").open("wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "autoprune", *argv, *extra], stdout=log, stderr=log))
    return procs


def wait_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    failed = [p.args for p in procs if p.wait() != 0]
    if failed:
        console.print(f"[yellow]warning:[/] {len(failed)} worker(s) failed; see worker-*.log in the run folder")


def tensorboard_logger(out: Path) -> Any:
    from autoprune.analysis.tensorboard import TensorBoardLogger

    return TensorBoardLogger(out / "tensorboard").on_trial


def plot_figures(out: Path) -> dict[str, str]:
    """Figures of the run (accuracy vs MACs with the Pareto front, keep ratios, best so far) in OUT/figures."""
    from autoprune.analysis.plots import plot_run

    return {f"figure_{name}": str(path.relative_to(out)) for name, path in plot_run(out).items()}


def jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
            for k, v in options.items()}
