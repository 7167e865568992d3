"""Plots and the HTML report of run folders, checked against facts computed here (and a real browser)."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from autoprune.analysis.html import write_report
from autoprune.analysis.plots import (
    ACCURACY_AXIS_LABEL,
    BOUNDS_LABEL,
    PARETO_LABEL,
    UNIFORM_RATIOS_LABEL,
    best_so_far,
    plot_accuracy_vs_macs,
    plot_keep_ratios,
    run_figures,
)
from autoprune.analysis.rundir import TrialPoint, load_run, read_trials_csv
from autoprune.analysis.sensitivity import SensitivityRow, SensitivityTable
from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult
from autoprune.search.base import Trial, pareto_front
from autoprune.search.runner import TrialLog

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _trials(n: int = 40, seed: int = 0) -> list[Trial]:
    """Random trials in every state; accuracies and MACs distinct so the front is unambiguous."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        state = "failed" if i % 11 == 5 else ("pruned" if i % 7 == 3 else "complete")
        macs = int(rng.integers(100_000, 1_000_000)) * 10 + i
        acc = float(rng.uniform(0.3, 0.95)) + i * 1e-7
        result = None if state == "failed" else EvalResult(
            counts={"a": 1}, accuracy=acc, loss=1.0, macs=macs, macs_ratio=macs / 1e7, params=1000, latency_ms=None,
            fidelity=1, samples=64, seconds=0.1, cached=False)  # fmt: skip
        out.append(Trial(i, {"a": 1}, state, result, 0.1, feasible=i % 9 != 4,  # type: ignore[arg-type]
                         error="boom" if state == "failed" else None))  # fmt: skip
    return out


def _non_dominated(points: list[TrialPoint]) -> set[int]:
    """Brute force: complete feasible trials that no other such trial beats in both MACs and accuracy."""
    ok = [p for p in points if p.state == "complete" and p.feasible]
    return {p.number for p in ok if not any(
        q.macs <= p.macs and q.accuracy >= p.accuracy and (q.macs, q.accuracy) != (p.macs, p.accuracy)  # type: ignore[operator]
        for q in ok)}  # fmt: skip


def _search_folder(path: Path, *, report: dict | None = None, sensitivity: bool = False) -> Path:  # type: ignore[type-arg]
    path.mkdir(parents=True, exist_ok=True)
    log = TrialLog(path)
    for t in _trials():
        log.append(t)
    if report is not None:
        (path / "report.json").write_text(json.dumps(report))
    if sensitivity:
        rows = [SensitivityRow(g, r, int(16 * r), 16, r, 0.9, 0.9 * (1 - r), 2 * (1 - r))
                for g in ("conv1", "layer1.0.conv1") for r in (0.25, 0.5, 1.0)]  # fmt: skip
        SensitivityTable(rows).save_csv(path / "sensitivity.csv")
    return path


SPACE_GROUPS = {  # network order of a made-up model, deliberately not the alphabetical one
    "layer1.0.conv1": {"channels": 16, "counts": [4, 8, 12, 16]},
    "conv1": {"channels": 16, "counts": [8, 12, 16]},
    "fc_in": {"channels": 32, "counts": [16, 24, 32]},
}
WINNER: dict[str, Any] = {"source": "search", "trial": 0, "search_val_accuracy": 0.94, "val_accuracy": 0.9333,
          "val_accuracy_se": 0.0131, "macs_ratio": 0.496, "params": 120_000,
          "counts": {"layer1.0.conv1": 8, "conv1": 12, "fc_in": 16}}  # fmt: skip
UNIFORM: dict[str, Any] = {"source": "search", "trial": 1, "search_val_accuracy": 0.9, "val_accuracy": 0.9056,
           "val_accuracy_se": 0.0154, "macs_ratio": 0.4987, "params": 130_000,
           "counts": {"layer1.0.conv1": 12, "conv1": 12, "fc_in": 24}}  # fmt: skip
STATEMENT = "the searched winner is +2.77 ± 1.20 points over the uniform candidate on validation (360 samples)"
TEST_STATEMENT = "On the 400 test samples (read once, never used to choose): +3.77 ± 1.10 points (paired) against ..."
#: A search report as `autoprune search` writes it (the fields the page and the figures read).
FULL_REPORT = {
    "command": "search", "model": "resnet20", "dataset": "digits", "seed": 0, "wall_time_s": 12.5,
    "dense": {"accuracy": 0.98, "accuracy_se": 0.0074, "macs": 2_500_000, "params": 270_000, "latency_ms": 1.1,
              "latency_batch_size": 1, "latency_threads": 2, "deploy_latency_ms": 0.812},
    "uniform": {"accuracy": 0.9123, "accuracy_se": 0.0149, "macs": 1_246_750, "params": 130_000, "latency_ms": 0.75,
                "deploy_latency_ms": 0.523},
    "pruned": {"accuracy": 0.95, "accuracy_se": 0.0115, "macs": 1_240_000, "params": 120_000, "latency_ms": 0.7,
               "deploy_latency_ms": 0.456},
    "macs_ratio": 0.496, "reference": {"uniform": {"val_accuracy": 0.9, "macs_ratio": 0.4987}},
    "keep_ratios": {"conv1": 0.75, "fc_in": 0.5, "layer1.0.conv1": 0.5},
    "space": {"metric": "macs", "target": 0.5, "round_to": 4, "groups": SPACE_GROUPS},
    "search": {"searcher": "tpe", "wall_time_s": 10.0, "evaluations": 40},
    "winner": WINNER, "uniform_rescored": UNIFORM, "rescored": [WINNER, UNIFORM],
    "vs_uniform": {"difference": 0.0277, "se": 0.012, "beats_uniform": True, "statement": STATEMENT},
    "vs_uniform_test": {"difference": 0.0377, "se": 0.011, "samples": 400, "statement": TEST_STATEMENT},
}  # fmt: skip
#: An older search report: no re-scoring, no standard errors, no deploy latency, no space.
OLD_REPORT = {
    "command": "search", "model": "resnet20", "dataset": "digits", "seed": 0, "wall_time_s": 12.5,
    "dense": {"accuracy": 0.98, "macs": 2_500_000, "params": 270_000, "latency_ms": 1.1},
    "pruned": {"accuracy": 0.95, "macs": 1_240_000, "params": 120_000, "latency_ms": 0.7},
    "macs_ratio": 0.496, "reference": {"uniform": {"val_accuracy": 0.9, "macs_ratio": 0.49}},
    "keep_ratios": {"conv1": 0.75, "layer1.0.conv1": 0.5}, "search": {"wall_time_s": 10.0, "evaluations": 40},
}  # fmt: skip


def test_trials_csv_round_trip(tmp_path: Path) -> None:
    folder = _search_folder(tmp_path / "run")
    points = read_trials_csv(folder / "trials.csv")
    trials = _trials()
    assert [p.number for p in points] == [t.number for t in trials]
    for p, t in zip(points, trials, strict=True):
        assert (p.state, p.feasible) == (t.state, t.feasible)
        assert p.accuracy == (None if t.result is None else pytest.approx(t.result.accuracy, abs=1e-6))
        assert p.macs == (None if t.result is None else t.result.macs)


def test_pareto_line_is_exactly_the_non_dominated_trials(tmp_path: Path) -> None:
    points = read_trials_csv(_search_folder(tmp_path / "run").joinpath("trials.csv"))
    fig = plot_accuracy_vs_macs(points, FULL_REPORT)
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == PARETO_LABEL]
    assert len(lines) == 1
    xs, ys = (np.asarray(v, dtype=float) for v in lines[0].get_data())
    expected = sorted((p for p in points if p.number in _non_dominated(points)), key=lambda p: p.macs or 0)
    assert len(expected) >= 2
    assert [p.number for p in expected] == [t.number for t in pareto_front(_trials())]  # the searchers' own rule
    assert xs == pytest.approx([p.macs_ratio for p in expected])
    assert ys == pytest.approx([p.accuracy for p in expected])
    labels = set(fig.axes[0].get_legend_handles_labels()[1])
    assert {"uniform (re-scored val)", "winner (re-scored val)", "over budget", PARETO_LABEL} <= labels


def test_best_so_far_is_the_running_maximum() -> None:
    points = [TrialPoint(i, s, f, a, 10, 0.5) for i, (s, f, a) in enumerate(
        [("failed", True, None), ("complete", True, 0.5), ("complete", False, 0.9), ("pruned", True, 0.8),
         ("complete", True, 0.7), ("complete", True, 0.6)])]  # fmt: skip
    assert best_so_far(points) == [(2, 0.5), (3, 0.5), (4, 0.5), (5, 0.7), (6, 0.7)]


def test_missing_report_keys_are_fine(tmp_path: Path) -> None:
    folder = _search_folder(tmp_path / "run", report={"command": "search", "dense": {"accuracy": 0.9}})
    figures = run_figures(load_run(folder))
    assert set(figures) == {"accuracy_vs_macs", "best_so_far"}  # no keep ratios anywhere: no bar chart
    page = write_report(folder)["html"].read_text()
    assert page.count("<img") == 2


def _images(page: str) -> list[Image.Image]:
    images = []
    for uri in re.findall(r"<img [^>]*src='data:image/png;base64,([^']+)'", page):
        data = base64.b64decode(uri, validate=True)
        assert data.startswith(PNG_MAGIC)
        img = Image.open(io.BytesIO(data))
        img.load()
        images.append(img)
    return images


def test_html_embeds_every_figure_as_png(tmp_path: Path) -> None:
    folder = _search_folder(tmp_path / "run", report=FULL_REPORT, sensitivity=True)
    written = write_report(folder)
    page = written["html"].read_text()
    images = _images(page)
    assert len(images) == page.count("<img") == 4  # accuracy vs MACs, best so far, keep ratios, sensitivity
    assert all(img.format == "PNG" and img.size[0] > 300 for img in images)
    for name in ("accuracy_vs_macs", "best_so_far", "keep_ratios", "sensitivity"):
        assert (folder / "figures" / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    assert "src='http" not in page and "src=\"http" not in page  # self-contained
    for number in ("0.9800", "0.9500", "2.500M", "1.240M", "0.700", "12.5", "10.0"):
        assert number in page
    old = write_report(_search_folder(tmp_path / "old", report=OLD_REPORT))["html"].read_text()
    assert len(_images(old)) == 3
    for number in ("0.9800", "0.9500", "2.500M", "1.240M", "0.700", "12.5", "10.0"):
        assert number in old


def test_plan_json_gives_the_keep_ratios(tmp_path: Path) -> None:
    folder = tmp_path / "extract"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"command": "extract"}))
    (folder / "plan.json").write_text(json.dumps({"channels": {"conv1": 16, "fc": 8}, "kept": {"conv1": [0, 1, 2, 3],
                                                                                               "fc": list(range(8))}}))
    assert load_run(folder).keep_ratios == {"conv1": 0.25, "fc": 1.0}
    assert set(run_figures(load_run(folder))) == {"keep_ratios"}


def test_folders_without_results_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(AutoPruneError, match="not an autoprune run folder"):
        load_run(tmp_path)
    with pytest.raises(AutoPruneError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "report.json").write_text("{broken")
    with pytest.raises(AutoPruneError, match="not valid JSON"):
        load_run(tmp_path)


def _offsets(ax: Any, label: str) -> list[tuple[float, float]]:
    """The (x, y) points of the scatter called ``label``."""
    found = [c for c in ax.collections if c.get_label() == label]
    assert len(found) == 1, [c.get_label() for c in ax.collections]
    return [(float(x), float(y)) for x, y in found[0].get_offsets()]


def test_accuracy_figure_puts_only_validation_accuracy_on_its_axis(tmp_path: Path) -> None:
    points = read_trials_csv(_search_folder(tmp_path / "run").joinpath("trials.csv"))
    ax: Any = plot_accuracy_vs_macs(points, FULL_REPORT).axes[0]
    assert ax.get_ylabel() == ACCURACY_AXIS_LABEL == "validation accuracy"
    labels = ax.get_legend_handles_labels()[1]
    assert not [label for label in labels if "test" in label]  # test accuracy is the page's table, not this axis
    assert _offsets(ax, "winner (re-scored val)") == [pytest.approx((WINNER["macs_ratio"], WINNER["val_accuracy"]))]
    assert _offsets(ax, "uniform (re-scored val)") == [pytest.approx((UNIFORM["macs_ratio"], UNIFORM["val_accuracy"]))]
    spans = [tuple(seg[:, 1]) for c in ax.collections if c.get_label().startswith("_") for seg in c.get_segments()]
    for entry in (WINNER, UNIFORM):  # one standard error either side of each re-scored point
        acc, se = entry["val_accuracy"], entry["val_accuracy_se"]
        assert any(s == pytest.approx((acc - se, acc + se)) for s in spans)


def test_accuracy_figure_of_older_reports(tmp_path: Path) -> None:
    points = read_trials_csv(_search_folder(tmp_path / "run").joinpath("trials.csv"))
    ax: Any = plot_accuracy_vs_macs(points, OLD_REPORT).axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "uniform (val)" in labels and not [label for label in labels if "winner" in label or "dense" in label]
    best = {"number": 3, "result": {"accuracy": 0.91, "macs_ratio": 0.47}}
    ax = plot_accuracy_vs_macs(points, {**OLD_REPORT, "search": {"best": best}}).axes[0]
    assert _offsets(ax, "winner (search val)") == [pytest.approx((0.47, 0.91))]
    sample = {"command": "sample", "finetuned": True, "macs_ratio": 0.48,
              "pruned": {"accuracy": 0.5, "val_accuracy": 0.6}, "dense": {"accuracy": 0.9, "val_accuracy": 0.88},
              "space": {"metric": "params", "target": 0.5}}  # fmt: skip
    ax = plot_accuracy_vs_macs(points, sample).axes[0]
    assert _offsets(ax, "winner (finetuned, val)") == [pytest.approx((0.48, 0.6))]
    dense = [ln.get_ydata() for ln in ax.get_lines() if ln.get_label() == "dense (val)"]
    assert len(dense) == 1 and [float(y) for y in dense[0]] == [0.88, 0.88]
    assert "budget" not in ax.get_legend_handles_labels()[1]  # a params budget is not a MACs position


def test_keep_ratios_in_the_space_order_with_bounds_and_uniform() -> None:
    ratios = {**FULL_REPORT["keep_ratios"], "head": 1.0}  # type: ignore[dict-item]
    ax: Any = plot_keep_ratios(ratios, FULL_REPORT).axes[0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    assert names == ["layer1.0.conv1", "conv1", "fc_in", "head"]  # the space's groups, then the rest as given
    assert [bar.get_height() for bar in ax.patches] == pytest.approx([ratios[n] for n in names])
    bounds = [c for c in ax.collections if c.get_label() == BOUNDS_LABEL]
    assert len(bounds) == 1
    segments = [(float(s[0, 0]), float(s[0, 1]), float(s[1, 1])) for s in bounds[0].get_segments()]
    assert segments == [(0, 4 / 16, 1.0), (1, 8 / 16, 1.0), (2, 16 / 32, 1.0)]  # exact in binary
    uniform = _offsets(ax, UNIFORM_RATIOS_LABEL)
    assert uniform == [pytest.approx((0, 12 / 16)), pytest.approx((1, 12 / 16)), pytest.approx((2, 24 / 32))]
    ax = plot_keep_ratios(ratios).axes[0]  # prune / extract folders: no space, no reference
    assert [t.get_text() for t in ax.get_xticklabels()] == list(ratios)
    assert not [c for c in ax.collections if c.get_label() in (BOUNDS_LABEL, UNIFORM_RATIOS_LABEL)]


def _table(page: str, table_id: str) -> list[list[str]]:
    match = re.search(rf"<table id='{table_id}'>(.*?)</table>", page, re.S)
    assert match is not None, f"no table {table_id} in the page"
    return [[html.unescape(c) for c in re.findall(r"<t[dh]>(.*?)</t[dh]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", match.group(1))]  # fmt: skip


def test_html_summary_has_test_and_validation_accuracy_latency_and_verdict(tmp_path: Path) -> None:
    page = write_report(_search_folder(tmp_path / "run", report=FULL_REPORT))["html"].read_text()
    rows = _table(page, "key-numbers")
    assert rows[0] == ["", "dense", "uniform reference", "winner"]
    cells = {r[0]: r[1:] for r in rows[1:]}
    assert cells["test accuracy"] == ["0.9800 ± 0.0074", "0.9123 ± 0.0149", "0.9500 ± 0.0115"]
    assert cells["validation accuracy"] == ["-", "0.9056 ± 0.0154", "0.9333 ± 0.0131"]
    assert cells["MACs (fraction of dense)"] == ["2.500M (1.000)", "1.247M (0.499)", "1.240M (0.496)"]
    assert cells["deploy-form latency (ms)"] == ["0.812", "0.523", "0.456"]
    assert cells["latency (ms, batch 1, threads 2)"] == ["1.100", "0.750", "0.700"]
    assert html.escape(STATEMENT) in page and html.escape(TEST_STATEMENT) in page
    trials = _table(page, "trials-0")
    assert trials[0][:3] == ["trial", "validation accuracy (trial score)", "re-scored validation accuracy"]
    by_trial = {r[0]: r for r in trials[1:]}
    assert by_trial["0"][2] == "0.9333 ± 0.0131" and by_trial["0"][-1] == "winner"
    assert by_trial["1"][2] == "0.9056 ± 0.0154" and by_trial["1"][-1] == "uniform"
    accs = [float(r[1]) for r in trials[1:]]
    done = sorted((p.accuracy or 0.0 for p in read_trials_csv(tmp_path / "run" / "trials.csv")
                   if p.state == "complete" and p.feasible), reverse=True)  # fmt: skip
    assert accs[:10] == pytest.approx(done[:10], abs=1e-4)


def test_html_of_a_multi_objective_search_lists_the_pareto_front(tmp_path: Path) -> None:
    front = [t.to_dict() for t in pareto_front(_trials())]
    report = {**FULL_REPORT, "search": {"searcher": "nsga2", "pareto": front}}
    page = write_report(_search_folder(tmp_path / "run", report=report))["html"].read_text()
    assert "Pareto front" in page
    numbers = [int(r[0]) for r in _table(page, "trials-0")[1:]]
    assert numbers == [t["number"] for t in sorted(front, key=lambda t: t["result"]["macs_ratio"])]
    assert [r[0] for r in _table(page, "trials-1")[1:]] == ["0", "1"]  # the re-scored trials


def test_html_of_older_and_non_search_reports(tmp_path: Path) -> None:
    page = write_report(_search_folder(tmp_path / "old", report=OLD_REPORT))["html"].read_text()
    rows = _table(page, "key-numbers")
    assert rows[0] == ["", "dense", "uniform reference", "winner"]
    cells = {r[0]: r[1:] for r in rows[1:]}
    assert cells["test accuracy"] == ["0.9800", "-", "0.9500"] and cells["validation accuracy"] == ["-", "0.9000", "-"]
    assert "deploy-form latency (ms)" not in cells and "vs-uniform" not in page and "load-snippet" not in page
    folder = tmp_path / "prune"
    folder.mkdir()
    prune = {"command": "prune", "dense": OLD_REPORT["dense"], "pruned": OLD_REPORT["pruned"]}
    (folder / "report.json").write_text(json.dumps(prune))
    rows = _table(write_report(folder)["html"].read_text(), "key-numbers")
    assert rows[0] == ["", "dense", "pruned"] and "validation accuracy" not in [r[0] for r in rows]


def test_load_snippet_uses_the_public_api_and_the_run_paths(tmp_path: Path) -> None:
    folder = _search_folder(tmp_path / "run", report={**FULL_REPORT, "num_classes": 10, "in_channels": 1})
    (folder / "plan.json").write_text(json.dumps({"input_shape": [1, 1, 8, 8], "channels": {"conv1": 16},
                                                  "kept": {"conv1": list(range(12))}}))  # fmt: skip
    (folder / "model.safetensors").write_bytes(b"")
    page = write_report(folder)["html"].read_text()
    match = re.search(r"<pre id='load-snippet'><code>(.*?)</code></pre>", page, re.S)
    assert match is not None
    code = html.unescape(match.group(1))
    compile(code, "snippet", "exec")
    assert "from autoprune import build_model, load_pruned" in code
    assert "build_model('resnet20', num_classes=10, in_channels=1)" in code
    assert f"load_pruned(base, {str(folder.resolve() / 'plan.json')!r}" in code
    assert "torch.zeros(1, 1, 8, 8)" in code


def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (CI installs it: apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    folder = _search_folder(tmp_path / "run", report=FULL_REPORT, sensitivity=True)
    page = write_report(folder)["html"].read_text()
    probe = ("<script>window.addEventListener('load', () => { const imgs = [...document.images];"
             "document.body.setAttribute('data-rendered', imgs.filter(i => i.complete && i.naturalWidth > 0).length"
             " + '/' + imgs.length); });</script></body>")  # fmt: skip
    probed = tmp_path / "probe.html"
    probed.write_text(page.replace("</body>", probe))
    browser = _chromium()
    assert browser is not None
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r'data-rendered="(\d+)/(\d+)"', done.stdout)
    assert match is not None, done.stdout[:500]
    assert match.groups() == ("4", "4")
