"""One self-contained HTML page per run folder: key numbers and every figure as an embedded PNG.

The page needs no network and no files beside it (images are ``data:image/png;base64`` URIs), so it can
be mailed or attached to an issue as is.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoprune.analysis.plots import plot_run, run_figures
from autoprune.analysis.rundir import RunData, load_run

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}.muted{color:#777}
"""
_TITLES = {
    "accuracy_vs_macs": "Accuracy vs MACs",
    "best_so_far": "Best so far",
    "keep_ratios": "Keep ratios of the winner",
    "sensitivity": "Layer sensitivity",
}


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "acc":
        return f"{value:.4f}"
    if kind == "count":
        return f"{value / 1e6:.3f}M"
    if kind == "ms":
        return f"{value:.3f}"
    return f"{value:.3f}"


def key_numbers(report: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """Rows (quantity, dense, pruned) of the summary table; missing values are ``-``."""
    report = report or {}
    dense: Mapping[str, Any] = report["dense"] if isinstance(report.get("dense"), Mapping) else {}
    pruned: Mapping[str, Any] = report["pruned"] if isinstance(report.get("pruned"), Mapping) else {}
    rows = []
    for label, key, kind in (("test accuracy", "accuracy", "acc"), ("MACs", "macs", "count"),
                             ("parameters", "params", "count"), ("latency (ms)", "latency_ms", "ms")):  # fmt: skip
        if key in dense or key in pruned:
            rows.append((label, _fmt(dense.get(key), kind), _fmt(pruned.get(key), kind)))
    return rows


def _facts(report: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    report = report or {}
    facts = [(k, str(report[k])) for k in ("command", "model", "dataset", "seed") if k in report]
    for key, label in (("macs_ratio", "MACs ratio (pruned/dense)"), ("params_ratio", "params ratio"),
                       ("latency_ratio", "latency ratio")):  # fmt: skip
        if isinstance(report.get(key), (int, float)):
            facts.append((label, f"{report[key]:.3f}"))
    if isinstance(report.get("wall_time_s"), (int, float)):
        facts.append(("wall time of the run (s)", f"{report['wall_time_s']:.1f}"))
    search = report.get("search")
    if isinstance(search, Mapping) and search.get("searcher"):
        facts.append(("searcher", str(search["searcher"])))
    if isinstance(search, Mapping) and isinstance(search.get("wall_time_s"), (int, float)):
        facts.append(("search wall time (s)", f"{search['wall_time_s']:.1f}"))
        if "evaluations" in search:
            facts.append(("evaluations", str(search["evaluations"])))
    sampling = report.get("sampling")
    if isinstance(sampling, Mapping):
        for name, value in (sampling.get("correlation") or {}).items():
            facts.append((f"Spearman {name}" if not name.startswith("n_") else name, _fmt(value, "x")
                          if isinstance(value, float) else str(value)))  # fmt: skip
    return facts


def png_bytes(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def render_html(run: RunData, images: Mapping[str, bytes]) -> str:
    """The page: title, key numbers, facts, each image as a data URI, and the raw report.json."""
    report = run.report
    title = f"autoprune {report.get('command', 'run')}: {report.get('model', '')} on {report.get('dataset', '')}" \
        if report else f"autoprune run {run.folder.name}"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='muted'>run folder: {html.escape(str(run.folder))}</p>"]  # fmt: skip
    numbers = key_numbers(report)
    if numbers:
        parts.append("<h2>Dense vs pruned</h2><table><tr><th></th><th>dense</th><th>pruned</th></tr>")
        parts += [f"<tr><td>{html.escape(a)}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in numbers]
        parts.append("</table>")
    facts = _facts(report)
    if facts:
        parts.append("<table>")
        parts += [f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts]
        parts.append("</table>")
    bounds = (report or {}).get("lower_bounds")
    if isinstance(bounds, Mapping) and isinstance(bounds.get("keep_ratio"), Mapping):
        parts.append(f"<h2>Keep-ratio lower bounds (accuracy drop ≤ {html.escape(str(bounds.get('max_drop')))})"
                     "</h2><table><tr><th>group</th><th>lowest keep ratio</th></tr>")  # fmt: skip
        parts += [f"<tr><td>{html.escape(str(g))}</td><td>{_fmt(v, 'x')}</td></tr>"
                  for g, v in bounds["keep_ratio"].items()]  # fmt: skip
        parts.append("</table>")
    for name, data in images.items():
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        label = html.escape(_TITLES.get(name, name))
        parts.append(f"<h2>{label}</h2><img alt='{label}' id='fig-{html.escape(name)}' src='{uri}'>")
    if report:
        dump = html.escape(json.dumps(report, indent=2, sort_keys=True))
        parts.append(f"<details><summary>report.json</summary><pre>{dump}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(folder: str | Path, *, png: bool = True) -> dict[str, Path]:
    """Write ``report.html`` (and, with ``png``, ``figures/<name>.png``) into the run folder ``folder``.

    Returns:
        ``{"html": path, <figure name>: png path, ...}``.

    Raises:
        AutoPruneError: see :func:`autoprune.analysis.rundir.load_run`.
    """
    run = load_run(folder)
    figures = run_figures(run)
    written: dict[str, Path] = plot_run(folder) if png else {}
    page = render_html(run, {name: png_bytes(fig) for name, fig in figures.items()})
    path = run.folder / "report.html"
    path.write_text(page, encoding="utf-8")
    written["html"] = path
    return written
