"""Plots and the HTML report of run folders, checked against facts computed here (and a real browser)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoprune.analysis.html import write_report
from autoprune.analysis.plots import PARETO_LABEL, best_so_far, plot_accuracy_vs_macs, run_figures
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


FULL_REPORT = {
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
    assert {"uniform (val)", "winner (test)", "dense (test)", "over budget", PARETO_LABEL} <= labels


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
