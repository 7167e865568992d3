"""``autoprune sample``, ``sensitivity`` and ``report`` end to end on digits (tiny settings), in-process."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from autoprune.cli import app
from autoprune.models import save_checkpoint

FAST = ("--no-progress", "--threads", "1", "--device", "cpu")


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _ok(*args: str) -> Result:
    result = _invoke(*args)
    assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def checkpoint(digits_supernet, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return save_checkpoint(digits_supernet.dense, tmp_path_factory.mktemp("dense") / "model.pt", {"model": "resnet20"})


SAMPLE = ("--samples", "4", "--top-k", "2", "--bn-batches", "2", "--finetune-batches", "2", "--final-epochs", "1",
          "--val-batches", "3", "--tensorboard")  # fmt: skip


@pytest.fixture(scope="module")
def sample_dir(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("sample")
    try:
        _ok("sample", "--checkpoint", str(checkpoint), *SAMPLE, "--out", str(out), *FAST)
    finally:
        torch.set_num_threads(threads)
    return out


def test_sample_writes_a_budgeted_model_and_its_record(sample_dir: Path, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    for name in ("plan.json", "model.safetensors", "model.onnx", "trials.csv", "trials.jsonl", "report.json"):
        assert (sample_dir / name).is_file(), name
    report = json.loads((sample_dir / "report.json").read_text())
    assert report["command"] == "sample" and report["status"] == "ok"
    assert report["macs_ratio"] <= 0.5 + 1e-9
    assert report["pruned"]["macs"] == digits_supernet.space.structure.predict_macs(report["counts"])
    plan = json.loads((sample_dir / "plan.json").read_text())
    for name, ratio in report["keep_ratios"].items():
        assert len(plan["kept"][name]) / plan["channels"][name] == pytest.approx(ratio)
    assert set(report["reference"]["uniform"]) >= {"val_accuracy", "macs_ratio"}
    assert report["sampling"]["candidates"] == 4 and len(report["sampling"]["top_k"]) == 2
    assert "adaptive_bn_score_vs_finetuned" in report["sampling"]["correlation"]
    # --final-epochs: the chosen best finetuned one more epoch; the report's validation accuracy is that model's
    assert report["config"]["sampling"]["final_epochs"] == 1
    assert report["pruned"]["val_accuracy"] == report["sampling"]["final_val_accuracy"] is not None
    assert report["onnx_max_abs_diff"] <= 1e-4


def test_sample_rerun_refuses_a_finished_run_and_continues_an_unfinished_one(sample_dir: Path, checkpoint: Path,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    files = {p.name: p.read_bytes() for p in sample_dir.iterdir() if p.is_file()}
    again = ("sample", "--checkpoint", str(checkpoint), *SAMPLE)
    result = _invoke(*again, "--out", str(sample_dir), *FAST)
    assert result.exit_code == 2 and "holds a finished sample run" in result.output, result.output
    assert {p.name: p.read_bytes() for p in sample_dir.iterdir() if p.is_file()} == files  # nothing touched
    out = Path(shutil.copytree(sample_dir, tmp_path / "unfinished"))
    (out / "report.json").unlink()  # as if stopped before the end
    result = _invoke(*again, "--criterion", "l2", "--out", str(out), *FAST)
    assert result.exit_code == 2 and "criterion" in result.output, result.output
    result = _ok(*again, "--out", str(out), *FAST)
    assert "continuing the unfinished sample run" in result.output
    report, first = (json.loads((d / "report.json").read_text()) for d in (out, sample_dir))
    assert report["resumed"] is True
    assert report["counts"] == first["counts"]
    assert report["pruned"]["val_accuracy"] == first["pruned"]["val_accuracy"]


def test_sample_tensorboard_has_one_point_per_candidate(sample_dir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(sample_dir / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"trial/accuracy", "trial/macs_ratio", "search/best_accuracy"} <= set(tags)
    accs = [e.value for e in events.Scalars("trial/accuracy")]
    best = [e.value for e in events.Scalars("search/best_accuracy")]
    assert len(accs) == 4
    assert best == pytest.approx([max(accs[: i + 1]) for i in range(4)])


def test_report_of_a_sample_folder(sample_dir: Path) -> None:
    result = _ok("report", str(sample_dir))
    assert "report.html" in result.output
    page = (sample_dir / "report.html").read_text()
    assert len(re.findall(r"src='data:image/png;base64,", page)) == 3  # accuracy vs MACs, best so far, keep ratios


def test_report_load_snippet_rebuilds_the_exported_model(sample_dir: Path) -> None:
    import html

    _ok("report", str(sample_dir), "--no-png")
    page = (sample_dir / "report.html").read_text()
    match = re.search(r"<pre id='load-snippet'><code>(.*?)</code></pre>", page, re.S)
    assert match is not None
    namespace: dict[str, object] = {}
    exec(html.unescape(match.group(1)), namespace)  # the page's own snippet, as a user would paste it
    model = namespace["model"]
    assert isinstance(model, torch.nn.Module) and not model.training
    from autoprune.data import load_dataset

    splits = load_dataset("digits")  # the snippet builds the model from the report's num_classes, no data needed
    with torch.no_grad():
        hits = [(model(x).argmax(1) == y).sum().item() for x, y in splits.test_loader()]  # type: ignore[attr-defined]
    report = json.loads((sample_dir / "report.json").read_text())
    assert sum(hits) / report["pruned"]["test_samples"] == pytest.approx(report["pruned"]["accuracy"])


def test_sensitivity_command(checkpoint: Path, tmp_path: Path, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sens"
    _ok("sensitivity", "--checkpoint", str(checkpoint), "--ratios", "0.5,1", "--val-batches", "2",
        "--round-to", "4", "--out", str(out), *FAST)  # fmt: skip
    lines = (out / "sensitivity.csv").read_text().splitlines()
    groups = digits_supernet.space.structure.group_names
    assert len(lines) == 1 + 2 * len(groups)
    assert (out / "sensitivity.png").read_bytes().startswith(b"\x89PNG")
    report = json.loads((out / "report.json").read_text())
    assert set(report["lower_bounds"]["keep_ratio"]) == set(groups)
    space = digits_supernet.space
    for seed in report["seed_ratios"]:
        assert space.feasible(space.counts(seed))


def test_user_mistakes_exit_2(tmp_path: Path, checkpoint: Path) -> None:
    result = _invoke("report", str(tmp_path))
    assert result.exit_code == 2
    assert "not an autoprune run folder" in result.output and str(tmp_path) in result.output.replace("\n", "")
    result = _invoke("sample", "--checkpoint", str(checkpoint), "--strategy", "importanse", "--out",
                     str(tmp_path / "x"), *FAST)  # fmt: skip
    assert result.exit_code == 2 and "importance" in result.output
    result = _invoke("sensitivity", "--ratios", "0.5,2", "--out", str(tmp_path / "y"), *FAST)
    assert result.exit_code == 2 and "0.5,2" in result.output
