"""`autoprune supernet` (train once, resume) and `autoprune extract` (no finetuning), end to end on digits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autoprune.engine.export import load_pruned
from autoprune.engine.plan import PrunePlan
from autoprune.metrics import count_macs
from autoprune.models import build_model
from autoprune.supernet import Supernet

from .conftest import Invoke


def test_supernet_trains_resumes_and_extracts(run_ok: Invoke, invoke: Invoke, trained: Path, tmp_path: Path,
                                              fast: tuple[str, ...]) -> None:
    out = tmp_path / "sn"
    run_ok(["supernet", "--checkpoint", str(trained / "model.pt"), "--epochs", "1", "--out", str(out), *fast])
    report = json.loads((out / "report.json").read_text())
    assert report["command"] == "supernet" and len(report["history"]["largest_loss"]) == 1
    subnets = report["subnets"]
    assert subnets["uniform_at_target"]["macs_ratio"] <= 0.5 + 1e-9
    assert subnets["smallest"]["macs_ratio"] < subnets["uniform_at_target"]["macs_ratio"] < 1.0
    # rerunning the same command with more epochs resumes after the finished one
    run_ok(["supernet", "--checkpoint", str(trained / "model.pt"), "--epochs", "2", "--out", str(out), *fast])
    resumed = json.loads((out / "report.json").read_text())
    assert len(resumed["history"]["largest_loss"]) == 2
    assert resumed["history"]["largest_loss"][0] == report["history"]["largest_loss"][0]
    # each epoch's training time survives the resume: their sum is the whole training's, not the last run's
    seconds = resumed["history"]["epoch_seconds"]
    assert len(seconds) == 2 and seconds[0] == report["history"]["epoch_seconds"][0] and min(seconds) > 0
    # random sub-networks near the search budgets: recorded; a continued run cannot change the range
    near = tmp_path / "near"
    run_ok(["supernet", "--checkpoint", str(trained / "model.pt"), "--epochs", "1", "--sample-near", "0.3:0.5",
            "--out", str(near), *fast])
    assert json.loads((near / "report.json").read_text())["config"]["sample_near"] == [0.3, 0.5]
    changed = invoke(["supernet", "--checkpoint", str(trained / "model.pt"), "--epochs", "2", "--sample-near",
                      "0.2:0.5", "--out", str(near), *fast])
    assert changed.exit_code == 2 and "sample_near" in changed.output.replace("-", "_")
    bad = invoke(["supernet", "--checkpoint", str(trained / "model.pt"), "--sample-near", "0.6:0.3",
                  "--out", str(tmp_path / "bad-near"), *fast])
    assert bad.exit_code == 2 and "0.6" in bad.output and not (tmp_path / "bad-near" / "supernet.pt").exists()

    ex = tmp_path / "ex"
    run_ok(["extract", "--supernet", str(out / "supernet.pt"), "--target-macs", "0.5", "--out", str(ex), *fast[1:]])
    rep = json.loads((ex / "report.json").read_text())
    assert rep["finetuned"] is False and 0.45 <= rep["pruned"]["macs"] / rep["dense"]["macs"] <= 0.5
    base = build_model("resnet20", num_classes=10, in_channels=1)
    model = load_pruned(base, ex / "plan.json", ex / "model.safetensors")
    assert count_macs(model, (1, 1, 8, 8)) == rep["pruned"]["macs"]
    assert rep["onnx_max_abs_diff"] < 1e-4
    # the exported weights are the supernet's shared weights (BN recalibrated), not a retrained model
    net, _ = Supernet.load(out / "supernet.pt", build_model("resnet20", num_classes=10, in_channels=1))
    plan = PrunePlan.load(ex / "plan.json")
    direct = net.extract({n: len(k) for n, k in plan.kept.items()})
    for (name, a), (_, b) in zip(direct.state_dict().items(), model.state_dict().items(), strict=True):
        if "running" not in name and "num_batches" not in name:
            torch.testing.assert_close(a, b)

    bad = invoke(["extract", "--supernet", str(trained / "model.pt"), "--out", str(tmp_path / "bad"), *fast[1:]])
    assert bad.exit_code == 2 and "not an autoprune supernet" in bad.output


def test_supernet_continues_from_a_trained_supernet(run_ok: Invoke, invoke: Invoke, trained: Path, tmp_path: Path,
                                                     fast: tuple[str, ...]) -> None:
    """--init-supernet starts from a supernet's weights *and* its channel ranking (a fresh ranking of the
    trained shared weights would shuffle which channels every sub-network keeps)."""
    first = tmp_path / "first"
    run_ok(["supernet", "--checkpoint", str(trained / "model.pt"), "--epochs", "1", "--lr", "0.5", "--out",
            str(first), *fast])
    base, _ = Supernet.load(first / "supernet.pt", build_model("resnet20", num_classes=10, in_channels=1))
    again = tmp_path / "again"
    run_ok(["supernet", "--init-supernet", str(first / "supernet.pt"), "--epochs", "1", "--lr", "1e-12",
            "--sample-near", "0.3:0.5", "--out", str(again), *fast])
    net, meta = Supernet.load(again / "supernet.pt", build_model("resnet20", num_classes=10, in_channels=1))
    assert meta["init_supernet"] == str((first / "supernet.pt").resolve())
    assert meta["dense_checkpoint"] == str((trained / "model.pt").resolve())
    for name, scores in base.scores.items():  # the first supernet's ranking, not one of its trained weights
        assert torch.equal(net.scores[name], scores)
    fresh = Supernet(net.model, net.input_shape)
    assert any(not torch.equal(fresh.scores[n], s) for n, s in base.scores.items())
    # a learning rate of 1e-12 leaves the conv weights where the first supernet left them
    for (name, a), (_, b) in zip(base.model.state_dict().items(), net.model.state_dict().items(), strict=True):
        if name.endswith("conv1.weight") or name.endswith("conv2.weight"):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # the report's dense model is still the one the first supernet started from
    dense = json.loads((first / "report.json").read_text())["dense"]
    assert json.loads((again / "report.json").read_text())["dense"]["accuracy"] == dense["accuracy"]

    both = invoke(["supernet", "--init-supernet", str(first / "supernet.pt"), "--checkpoint",
                   str(trained / "model.pt"), "--out", str(tmp_path / "both"), *fast])
    assert both.exit_code == 2 and "drop one" in both.output and not (tmp_path / "both").exists()
    dense_file = invoke(["supernet", "--init-supernet", str(trained / "model.pt"), "--out", str(tmp_path / "d"),
                         *fast])
    assert dense_file.exit_code == 2 and "is not a supernet" in dense_file.output


def test_supernet_without_distillation(run_ok: Invoke, invoke: Invoke, trained: Path, tmp_path: Path,
                                       fast: tuple[str, ...]) -> None:
    """--teacher none: every sub-network learns the labels (recorded as distill false); a bad teacher is named."""
    out = tmp_path / "labels"
    result = run_ok(["supernet", "--checkpoint", str(trained / "model.pt"), "--epochs", "1", "--teacher", "none",
                     "--out", str(out), *fast])
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["supernet"]["distill"] is False and report["config"]["cli"]["teacher"] == "none"
    assert "loss largest" in result.output and "smaller (labels)" in result.output  # the per-epoch line
    bad = invoke(["supernet", "--checkpoint", str(trained / "model.pt"), "--teacher", "nobody",
                  "--out", str(tmp_path / "bad"), *fast])
    assert bad.exit_code == 2 and "--teacher 'nobody'" in bad.output and "none" in bad.output
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow  # multi-process or many epochs: kept out of the ~10 min fast suite
def test_supernet_under_torchrun_with_two_cpu_processes(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "autoprune", "supernet",
         "--checkpoint", str(trained / "model.pt"), "--epochs", "1", "--out", str(out), "--no-progress",
         "--threads", "1", "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error")]
    assert proc.returncode == 0, "\n".join(errors) + proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert (proc.stdout + proc.stderr).count("supernet: epoch 1/1 finished") == 1  # one line, from rank 0 only
    assert len(report["history"]["largest_loss"]) == 1
    dense = torch.load(trained / "model.pt", weights_only=True)["state_dict"]
    trained_sn = torch.load(out / "supernet.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(dense[k], trained_sn[k]) for k in dense if "conv" in k)
