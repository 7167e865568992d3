"""Every command's report.json agrees with the one documented schema (autoprune/report_schema.py)."""

from __future__ import annotations

import json
from pathlib import Path

from autoprune.report_schema import ALL, schema_markdown, schema_problems

from .conftest import FAST, Invoke

ROOT = Path(__file__).resolve().parents[2]


def test_the_rendered_schema_page_is_up_to_date() -> None:
    page = ROOT / "docs" / "report_schema.md"
    assert page.read_text() == schema_markdown(), "regenerate docs/report_schema.md from autoprune.report_schema"


def test_schema_problems_catches_undocumented_and_missing_fields() -> None:
    report = {"schema_version": 2, "command": "train", "surprise": 1, "config": {"cli": {}}}
    problems = schema_problems(report)
    assert any("'surprise' is not documented" in p for p in problems)
    assert any("'dense' is missing" in p for p in problems)


def test_every_command_writes_a_report_of_the_documented_schema(run_ok: Invoke, trained: Path,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    ckpt = str(trained / "model.pt")
    sn = tmp_path / "supernet"
    runs = {
        "train": trained,
        "prune": ["prune", "--checkpoint", ckpt, "--finetune-epochs", "1", "--no-onnx", *FAST],
        "groups": ["groups", "--device", "cpu"],
        "supernet": ["supernet", "--checkpoint", ckpt, "--supernet-epochs", "1", "--bn-batches", "1", *FAST],
        "search": ["search", "--supernet", str(sn / "supernet.pt"), "--checkpoint", ckpt, "--searcher", "random",
                   "--trials", "2", "--bn-batches", "1", "--finetune-epochs", "1", "--no-onnx", *FAST],
        "extract": ["extract", "--supernet", str(sn / "supernet.pt"), "--bn-batches", "1", "--no-onnx",
                    "--device", "cpu"],
        "sample": ["sample", "--checkpoint", ckpt, "--samples", "2", "--top-k", "1", "--finetune-epochs", "0",
                   "--val-batches", "1", "--bn-batches", "1", "--no-onnx", *FAST],
        "sensitivity": ["sensitivity", "--checkpoint", ckpt, "--ratios", "0.5,1", "--val-batches", "1", *FAST],
    }
    assert set(runs) == set(ALL)
    problems: list[str] = []
    for command, args in runs.items():
        out = args if isinstance(args, Path) else sn if command == "supernet" else tmp_path / command
        if not isinstance(args, Path):
            run_ok([*args, "--out", str(out)])
        report = json.loads((out / "report.json").read_text())
        problems += schema_problems(report)
        if command != "train":  # the shared fixture's options are its own
            assert report["config"]["cli"]["seed"] == 0, command
    assert problems == []
    search = json.loads((tmp_path / "search" / "report.json").read_text())
    assert search["finetuned"] is False and "accuracy" in search["finetuned_metrics"]
    assert 0 < search["dense"]["val_accuracy"] <= 1  # the dense model of --checkpoint, on validation too
    assert search["config"]["cli"]["budget"] == "target_macs" and search["config"]["cli"]["target"] == 0.5
    extract = json.loads((tmp_path / "extract" / "report.json").read_text())
    assert "accuracy" in extract["dense"]  # the supernet names its dense checkpoint
