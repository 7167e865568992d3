"""The Python API does what ``autoprune search`` does: the same winner, metrics, files and report.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from autoprune.cli import app
from autoprune.data import load_dataset
from autoprune.errors import AutoPruneError
from autoprune.models import build_model
from autoprune.pipelines.search import search_supernet
from autoprune.pipelines.search_report import ReportRequest
from autoprune.report_schema import schema_problems
from autoprune.search_spaces import space_from_dict
from autoprune.seed import seed_everything
from autoprune.supernet import Supernet

pytestmark = pytest.mark.slow

SETTINGS = {"searcher": "random", "trials": 4, "bn_batches": 2, "seed": 0}


@pytest.fixture
def supernet_file(digits_supernet: Any, tmp_path: Path) -> Path:
    path = tmp_path / "supernet.pt"
    digits_supernet.supernet.save(path, {"space": digits_supernet.space.to_dict(), "model": "resnet20"})
    return path


def _cli_report(supernet_file: Path, out: Path) -> dict[str, Any]:
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, [
            "search", "--supernet", str(supernet_file), "--searcher", SETTINGS["searcher"], "--trials",
            str(SETTINGS["trials"]), "--bn-batches", str(SETTINGS["bn_batches"]), "--seed", str(SETTINGS["seed"]),
            "--no-onnx", "--no-progress", "--threads", "1", "--device", "cpu", "--out", str(out)])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


def test_search_supernet_with_a_report_request_writes_the_report_the_cli_writes(supernet_file: Path,
                                                                                 tmp_path: Path) -> None:
    cli = _cli_report(supernet_file, tmp_path / "cli")
    # the same supernet, space and data, loaded as the command loads them, searched through the Python API
    seed_everything(0)
    splits = load_dataset("digits")
    net, meta = Supernet.load(supernet_file, build_model("resnet20", num_classes=10, in_channels=1))
    space = space_from_dict(meta["space"], net.structure)
    out = tmp_path / "api"
    outcome = search_supernet(net, space, splits, searcher="random", trials=4, seed=0, bn_batches=2,
                              val_batch_size=cli["config"]["val_batch_size"], out=out, progress=False,
                              report=ReportRequest(onnx=False, model_name="resnet20"))
    assert outcome.report is not None and outcome.report.path == out / "report.json"
    api = json.loads((out / "report.json").read_text())
    assert api == outcome.report.data and schema_problems(api) == []
    # the same fields, every metrics object and config entry alike, and the same files
    assert set(api) == set(cli)
    for key in ("dense", "uniform", "pruned", "config", "files", "search", "winner", "vs_uniform", "budget_use"):
        assert set(api[key]) == set(cli[key]), key
    assert all((out / f).is_file() for f in api["files"].values())
    # the same winner for the same seed, measured alike on the test split
    assert api["winner"] == cli["winner"] and api["counts"] == cli["counts"] and api["rescored"] == cli["rescored"]
    for key in ("uniform", "pruned"):
        assert api[key]["accuracy"] == cli[key]["accuracy"] and api[key]["macs"] == cli[key]["macs"], key
    assert api["dense"] == cli["dense"]  # no dense model given: the supernet's MACs and params
    assert outcome.best_counts == api["counts"] and outcome.model is not None
    assert outcome.report.pruned["accuracy"] == api["pruned"]["accuracy"]


def test_a_report_request_needs_a_run_folder(digits_supernet: Any) -> None:
    with pytest.raises(AutoPruneError, match="needs out="):
        search_supernet(digits_supernet.supernet, digits_supernet.space, digits_supernet.splits, trials=1,
                        progress=False, report=ReportRequest())
