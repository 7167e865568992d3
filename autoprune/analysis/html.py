"""One self-contained HTML page per run folder: key numbers, tables and every figure as an embedded PNG.

The page needs no network and no files beside it (images are ``data:image/png;base64`` URIs), so it can
be mailed or attached to an issue as is. What it shows, where the run folder has it:

- dense, uniform reference and winner side by side: test accuracy ± SE, validation accuracy ± SE
  (re-scored), MACs, parameters, latency and deploy-form latency; the verdict against uniform;
- the best trials (the Pareto front for a multi-objective searcher), with their re-scored accuracy;
- how to load the exported model (``autoprune.load_pruned``), with the run's own paths;
- the figures of :mod:`autoprune.analysis.plots` and the raw ``report.json``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from autoprune.analysis.plots import pareto_points, run_figures, save_png
from autoprune.analysis.rundir import RunData, load_run, report_get

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}.muted{color:#777}
.verdict{font-weight:600}
"""
_TITLES = {
    "accuracy_vs_macs": "Validation accuracy vs MACs",
    "best_so_far": "Best so far",
    "keep_ratios": "Keep ratios of the winner",
    "sensitivity": "Layer sensitivity",
}
#: Rows of the best-trials table besides the re-scored and marked ones.
TOP_TRIALS = 10


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "acc":
        return f"{value:.4f}"
    if kind == "count":
        return f"{value / 1e6:.3f}M"
    return f"{value:.3f}"


def _pm(value: Any, se: Any) -> str:
    """``0.7744 ± 0.0221`` (an accuracy and its standard error); ``-`` where missing."""
    if _num(value) is None:
        return "-"
    return f"{value:.4f}" + (f" ± {se:.4f}" if _num(se) else "")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


class _Column(NamedTuple):
    heading: str
    metrics: Mapping[str, Any]  # test accuracy, MACs, params, latency (``model_metrics`` of the CLI)
    val: Any
    val_se: Any


def _columns(report: Mapping[str, Any]) -> list[_Column]:
    """Dense, uniform reference, winner and finetuned winner, each where the report has something of it."""
    winner, uniform = _mapping(report.get("winner")), _mapping(report.get("uniform_rescored"))
    ref_uniform = _mapping(report_get(report, "reference", "uniform"))
    pruned = _mapping(report.get("pruned"))
    finetuned = _mapping(report.get("finetuned_metrics") or report.get("finetuned"))  # "finetuned": schema 1
    uniform_metrics = _mapping(report.get("uniform")) or {k: v for k, v in ref_uniform.items() if k == "macs_ratio"}
    name = "winner" if report.get("command") == "search" else "pruned"
    columns = [
        _Column("dense", _mapping(report.get("dense")), report_get(report, "dense", "val_accuracy"),
                report_get(report, "dense", "val_accuracy_se")),
        _Column("uniform reference", uniform_metrics, uniform.get("val_accuracy", ref_uniform.get("val_accuracy")),
                uniform.get("val_accuracy_se")),
        _Column(name, pruned, winner.get("val_accuracy", pruned.get("val_accuracy")),
                winner.get("val_accuracy_se") if "val_accuracy" in winner else None),
        _Column(f"{name}, finetuned", finetuned, finetuned.get("val_accuracy"), None),
    ]  # fmt: skip
    return [c for c in columns if c.metrics or _num(c.val) is not None]


def key_numbers(report: Mapping[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    """The summary table as (column headings, rows): dense, uniform reference, winner (and finetuned).

    Rows: test accuracy ± SE, validation accuracy ± SE (the re-scored one where recorded), MACs and
    parameters (with the fraction of dense), latency and deploy-form latency. Columns and rows the report
    has nothing for are left out; a single missing value is ``-``.
    """
    report = report or {}
    columns = _columns(report)
    dense = _mapping(report.get("dense"))

    def count(m: Mapping[str, Any], key: str) -> str:
        value, base = _num(m.get(key)), _num(dense.get(key))
        if value is None:
            ratio = _num(m.get(f"{key}_ratio"))
            return "-" if ratio is None else f"({ratio:.3f})"
        return _fmt(value, "count") + (f" ({value / base:.3f})" if base else "")

    timed = next((c.metrics for c in columns if "latency_batch_size" in c.metrics), {})
    setting = [f"batch {timed['latency_batch_size']}"] if "latency_batch_size" in timed else []
    setting += [f"threads {timed['latency_threads']}"] if "latency_threads" in timed else []
    rows = [
        ["test accuracy"] + [_pm(c.metrics.get("accuracy"), c.metrics.get("accuracy_se")) for c in columns],
        ["validation accuracy"] + [_pm(c.val, c.val_se) for c in columns],
        ["MACs (fraction of dense)"] + [count(c.metrics, "macs") for c in columns],
        ["parameters (fraction of dense)"] + [count(c.metrics, "params") for c in columns],
        [f"latency (ms{''.join(', ' + s for s in setting)})"]
        + [_fmt(_num(c.metrics.get("latency_ms")), "ms") for c in columns],
        ["deploy-form latency (ms)"] + [_fmt(_num(c.metrics.get("deploy_latency_ms")), "ms") for c in columns],
    ]
    return [c.heading for c in columns], [r for r in rows if any(cell != "-" for cell in r[1:])]


def _facts(report: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    report = report or {}
    facts = [(k, str(report[k])) for k in ("command", "model", "dataset", "seed") if k in report]
    for key, label in (("macs_ratio", "MACs ratio (pruned/dense)"), ("params_ratio", "params ratio"),
                       ("latency_ratio", "latency ratio"),
                       ("deploy_latency_ratio", "deploy-form latency ratio")):  # fmt: skip
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


def _multi_objective(report: Mapping[str, Any]) -> bool:
    """Whether the run's searcher optimizes accuracy and MACs jointly (its result is a Pareto front)."""
    flag = report_get(report, "search", "multi_objective")
    if isinstance(flag, bool):
        return flag
    name = report_get(report, "search", "searcher") or report_get(report, "config", "searcher")
    if report.get("command") != "search" or not isinstance(name, str):
        return False
    from autoprune.search import SEARCHERS  # the searchers' own attribute, not a list kept here

    if name not in SEARCHERS:
        return False
    factory = SEARCHERS.get(name)
    return bool(getattr(getattr(factory, "cls", factory), "multi_objective", False))


class _Row(NamedTuple):
    number: int
    accuracy: float | None
    macs_ratio: float | None
    params: int | None


def trial_tables(run: RunData) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headings, rows) of the best trials, or of the Pareto front and the re-scored trials.

    Single objective: the ``TOP_TRIALS`` complete feasible trials with the highest validation score, plus
    the re-scored, winning and uniform ones. Multi-objective searcher: the Pareto front, then the trials
    re-scored to pick the winner. Each row has the trial's score during the run and, where the report has
    it, its re-scored validation accuracy ± SE. Empty where the run has no trials.
    """
    report = run.report or {}
    rescored = {e["trial"]: e for e in report.get("rescored") or () if isinstance(e, Mapping)
                and e.get("source") == "search" and isinstance(e.get("trial"), int)}  # fmt: skip
    roles: dict[int, list[str]] = {}
    for role, key in (("winner", "winner"), ("uniform", "uniform_rescored")):
        entry = _mapping(report.get(key))
        if entry.get("source") == "search" and isinstance(entry.get("trial"), int):
            roles.setdefault(entry["trial"], []).append(role)
    points = [p for p in run.trials or () if p.state == "complete" and p.feasible and p.accuracy is not None]
    by_number = {p.number: _Row(p.number, p.accuracy, p.macs_ratio, p.params) for p in points}
    ranked = sorted(by_number.values(), key=lambda r: (-(r.accuracy or 0.0), r.number))
    marked = [by_number.get(n) or _Row(n, _num(e.get("search_val_accuracy")), _num(e.get("macs_ratio")),
                                       e.get("params")) for n, e in rescored.items()]  # fmt: skip
    marked += [by_number[n] for n in roles if n in by_number and n not in rescored]
    tables: list[tuple[str, list[_Row]]] = []
    if _multi_objective(report):
        front = [t for t in report_get(report, "search", "pareto") or ()
                 if isinstance(t, Mapping) and isinstance(t.get("number"), int)]  # fmt: skip
        rows = [_Row(int(t["number"]), report_get(t, "result", "accuracy"), report_get(t, "result", "macs_ratio"),
                     report_get(t, "result", "params")) for t in front]  # fmt: skip
        rows = rows or [_Row(p.number, p.accuracy, p.macs_ratio, p.params) for p in pareto_points(points)]
        front_rows = sorted(rows, key=lambda r: r.macs_ratio or 0.0)
        tables.append(("Pareto front (validation accuracy up, MACs down)", front_rows))
        if marked:
            tables.append(("Re-scored trials", sorted(marked, key=lambda r: (-(r.accuracy or 0.0), r.number))))
    elif ranked or marked:
        top = ranked[:TOP_TRIALS]
        extra = [r for r in marked if r not in top]
        title = f"Best trials (top {len(top)} by validation score" + (", and the re-scored ones)" if extra else ")")
        tables.append((title, top + sorted(extra, key=lambda r: (-(r.accuracy or 0.0), r.number))))
    headings = ["trial", "validation accuracy (trial score)"] + (["re-scored validation accuracy"] if rescored else [])
    headings += ["MACs (fraction of dense)", "parameters", ""]
    out = []
    for title, table_rows in tables:
        table = []
        for r in table_rows:
            again = rescored.get(r.number)
            cells = [str(r.number), _fmt(_num(r.accuracy), "acc")]
            if rescored:
                cells.append("-" if again is None else _pm(again.get("val_accuracy"), again.get("val_accuracy_se")))
            cells += [_fmt(_num(r.macs_ratio), "x"), _fmt(_num(r.params), "count"), ", ".join(roles.get(r.number, []))]
            table.append(cells)
        out.append((title, headings, table))
    return out


def load_snippet(run: RunData) -> str | None:
    """Python that rebuilds the exported model of the run folder with :func:`autoprune.load_pruned`.

    None where the folder holds no plan and weights (sensitivity runs). The base model is built with the
    report's ``num_classes`` and ``in_channels`` where recorded, else from the run's dataset.
    """
    report = run.report or {}
    files = _mapping(report.get("files"))
    plan = run.folder.resolve() / str(files.get("plan", "plan.json"))
    weights = run.folder.resolve() / str(files.get("weights", "model.safetensors"))
    model = report.get("model")
    if not (plan.is_file() and weights.is_file() and isinstance(model, str)):
        return None
    try:
        shape = json.loads(plan.read_text()).get("input_shape")
    except (json.JSONDecodeError, AttributeError):
        shape = None
    shape = [int(n) for n in shape] if isinstance(shape, list) and all(isinstance(n, int) for n in shape) else None
    classes, channels = report.get("num_classes"), report.get("in_channels", shape[1] if shape else None)
    if isinstance(classes, int) and isinstance(channels, int):
        lines = ["import torch", "from autoprune import build_model, load_pruned", "",
                 f"base = build_model({model!r}, num_classes={classes}, in_channels={channels})"]  # fmt: skip
    else:
        dataset = str(report.get("dataset", "digits"))
        where = "" if dataset == "digits" else "  # add data_dir=... (the run's --data-dir)"
        lines = ["import torch", "from autoprune import build_model, load_dataset, load_pruned", "",
                 f"splits = load_dataset({dataset!r}){where}",
                 f"base = build_model({model!r}, num_classes=splits.num_classes, "
                 "in_channels=splits.in_channels)"]  # fmt: skip
    lines.append(f"model = load_pruned(base, {str(plan)!r}, {str(weights)!r}).eval()  # the plan cuts base")
    if shape:
        lines.append(f"logits = model(torch.zeros({', '.join(map(str, shape))}))  # the input shape of the plan")
    onnx = run.folder.resolve() / str(files.get("onnx", "model.onnx"))
    if onnx.is_file():
        lines.append(f"# without PyTorch: onnxruntime.InferenceSession({str(onnx)!r})")
    return "\n".join(lines)


def png_bytes(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _table(headings: Sequence[str] | None, rows: Sequence[Sequence[str]], table_id: str = "") -> str:
    head = "" if headings is None else "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headings) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table{f' id={table_id!r}' if table_id else ''}>{head}{body}</table>"


def render_html(run: RunData, images: Mapping[str, bytes]) -> str:
    """The page: title, key numbers, verdict, facts, trials, load snippet, each image as a data URI, report.json."""
    report = run.report or {}
    title = f"autoprune {report.get('command', 'run')}: {report.get('model', '')} on {report.get('dataset', '')}" \
        if report else f"autoprune run {run.folder.name}"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='muted'>run folder: {html.escape(str(run.folder))}</p>"]  # fmt: skip
    headings, rows = key_numbers(report)
    if rows:
        names = ", ".join([*headings[:-2], " and ".join(headings[-2:])]).capitalize()
        parts.append(f"<h2>{html.escape(names)}</h2>{_table(['', *headings], rows, 'key-numbers')}")
        if {"test accuracy", "validation accuracy"} <= {r[0] for r in rows}:
            parts.append("<p class='muted'>Test accuracy: the test split, read once for this report. Validation "
                         "accuracy: the split the candidates were scored and chosen on (optimistic for the chosen "
                         "one).</p>")  # fmt: skip
    statement = report_get(report, "vs_uniform", "statement")
    if isinstance(statement, str):
        parts.append(f"<p class='verdict' id='vs-uniform'>{html.escape(statement)}</p>")
    test_statement = report_get(report, "vs_uniform_test", "statement")
    if isinstance(test_statement, str):
        parts.append(f"<p class='verdict' id='vs-uniform-test'>{html.escape(test_statement)}</p>")
    facts = _facts(report)
    if facts:
        parts.append(_table(None, facts))
    for i, (name, trial_headings, trial_rows) in enumerate(trial_tables(run)):
        parts.append(f"<h2>{html.escape(name)}</h2>" + _table(trial_headings, trial_rows, f"trials-{i}"))
    bounds = report.get("lower_bounds")
    if isinstance(bounds, Mapping) and isinstance(bounds.get("keep_ratio"), Mapping):
        parts.append(f"<h2>Keep-ratio lower bounds (accuracy drop ≤ {html.escape(str(bounds.get('max_drop')))})</h2>")
        parts.append(_table(["group", "lowest keep ratio"],
                            [(str(g), _fmt(_num(v), "x")) for g, v in bounds["keep_ratio"].items()]))  # fmt: skip
    snippet = load_snippet(run)
    if snippet is not None:
        parts.append("<h2>Load the exported model</h2><pre id='load-snippet'><code>"
                     f"{html.escape(snippet)}</code></pre>")  # fmt: skip
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
    written: dict[str, Path] = {}
    if png and figures:
        (run.folder / "figures").mkdir(exist_ok=True)
        written = {name: save_png(fig, run.folder / "figures" / f"{name}.png") for name, fig in figures.items()}
    page = render_html(run, {name: png_bytes(fig) for name, fig in figures.items()})
    path = run.folder / "report.html"
    path.write_text(page, encoding="utf-8")
    written["html"] = path
    return written
