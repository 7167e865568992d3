"""The commands end to end on the embedded digits data, checked against independent facts.

Every run is tiny (resnet20 on 8x8 digits, one epoch). The assertions do not trust the CLI's own numbers:
they rebuild models from the files it wrote (model.pt, plan.json + model.safetensors, model.onnx) and
recount their MACs, re-evaluate their accuracy and compare with report.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from typer.testing import Result

from autoprune.data import load_dataset
from autoprune.engine.export import load_pruned
from autoprune.engine.plan import PrunePlan
from autoprune.engine.structure import ModelStructure
from autoprune.metrics import count_cost, count_macs, evaluate_accuracy
from autoprune.models import build_model, load_checkpoint_into
from autoprune.models.checkpoint import read_checkpoint

Invoke = Callable[[Sequence[str]], Result]

DIGITS_INPUT = (1, 1, 8, 8)  # 8x8 grayscale images
TARGET = 0.5


def _report(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "report.json").read_text())
    return data


def _resnet20() -> nn.Module:
    """The architecture the CLI builds for ``--model resnet20 --dataset digits``: 1 channel, 10 classes."""
    return build_model("resnet20", num_classes=10, in_channels=1)


def _test_accuracy(model: nn.Module) -> float:
    torch.set_num_threads(1)  # as the CLI ran (--threads 1), so that sums round the same way
    return evaluate_accuracy(model, load_dataset("digits").test_loader()).top1


def _rebuild(folder: Path) -> nn.Module:
    """The pruned model from the files a prune run wrote, on a fresh base model."""
    return load_pruned(_resnet20(), folder / "plan.json", folder / "model.safetensors")


def _prune(run_ok: Invoke, fast: tuple[str, ...], trained: Path, out: Path, *extra: str) -> dict[str, Any]:
    args = [
        "prune", "--model", "resnet20", "--dataset", "digits", "--checkpoint", str(trained / "model.pt"),
        "--target-macs", str(TARGET), "--finetune-epochs", "1", "--out", str(out), *fast, *extra,
    ]
    if "--onnx" not in extra:
        args.append("--no-onnx")
    run_ok(args)
    return _report(out)


def _check_common(report: dict[str, Any], command: str) -> None:
    assert report["schema_version"] == 2
    assert report["command"] == command
    assert report["model"] == "resnet20"
    assert report["dataset"] == "digits"
    assert report["seed"] == 0
    assert report["status"] == "ok"
    assert report["wall_time_s"] > 0


# --------------------------------------------------------------------------------------------- train
def test_train_writes_a_loadable_checkpoint_and_an_honest_report(trained: Path) -> None:
    report = _report(trained)
    _check_common(report, "train")
    assert report["files"] == {"checkpoint": "model.pt"}
    assert {k: v for k, v in report["config"].items() if k != "cli"} == {"device": "cpu", "checkpoint": None}
    assert report["config"]["cli"]["epochs"] == 1 and report["config"]["cli"]["model"] == "resnet20"
    assert len(report["training"]["history"]["train_loss"]) == 1  # --epochs 1

    model = _resnet20()
    meta = load_checkpoint_into(model, trained / "model.pt")  # strict, weights only
    assert meta["model"] == "resnet20" and meta["dataset"] == "digits"
    assert meta["num_classes"] == 10 and meta["in_channels"] == 1

    dense = report["dense"]
    assert 0.0 <= dense["accuracy"] <= 1.0
    assert dense["macs"] == count_macs(model, DIGITS_INPUT)
    assert dense["params"] == sum(p.numel() for p in model.parameters())
    # the saved weights are the ones that were evaluated
    assert _test_accuracy(model) == pytest.approx(dense["accuracy"], abs=1e-9)
    assert dense["accuracy"] > 0.2  # one epoch on digits is far above chance (0.1)


def test_train_is_reproducible_with_the_same_seed(run_ok: Invoke, fast: tuple[str, ...], trained: Path,
                                                  tmp_path: Path) -> None:
    run_ok(["train", "--model", "resnet20", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path), *fast])
    first, _ = read_checkpoint(trained / "model.pt")
    again, _ = read_checkpoint(tmp_path / "model.pt")
    assert first.keys() == again.keys()
    for key, value in first.items():
        torch.testing.assert_close(again[key], value, rtol=0, atol=0, msg=key)


# --------------------------------------------------------------------------------------------- prune
def test_prune_channels_reaches_the_target_and_the_files_rebuild_the_model(
    run_ok: Invoke, fast: tuple[str, ...], trained: Path, tmp_path: Path
) -> None:
    report = _prune(run_ok, fast, trained, tmp_path, "--criterion", "l1", "--onnx")
    _check_common(report, "prune")
    dense, pruned = report["dense"], report["pruned"]
    # the checkpoint was loaded, not a fresh model: same numbers as the train run
    assert dense["macs"] == _report(trained)["dense"]["macs"]
    assert dense["accuracy"] == pytest.approx(_report(trained)["dense"]["accuracy"], abs=1e-9)

    assert 0.48 <= report["macs_ratio"] <= TARGET
    assert report["macs_ratio"] == pytest.approx(pruned["macs"] / dense["macs"])
    assert report["deploy_latency_ratio"] == pytest.approx(pruned["deploy_latency_ms"] / dense["deploy_latency_ms"])
    assert report["config"]["prune"]["criterion"] == "l1"
    assert report["config"]["device"] == "cpu"
    assert report["config"]["checkpoint"] == str(trained / "model.pt")
    assert report["granularity"] == "channel"
    assert report["files"] == {"plan": "plan.json", "weights": "model.safetensors", "onnx": "model.onnx"}

    model = _rebuild(tmp_path).eval()
    assert count_macs(model, DIGITS_INPUT) == pruned["macs"]
    assert sum(p.numel() for p in model.parameters()) == pruned["params"]
    assert _test_accuracy(model) == pytest.approx(pruned["accuracy"], abs=1e-9)
    plan = PrunePlan.load(tmp_path / "plan.json")
    assert plan.keep_ratios == pytest.approx(report["keep_ratios"])
    assert len(report["rounds"]) == 1 and report["rounds"][0]["target"] == pytest.approx(TARGET)

    # the ONNX file computes what the rebuilt model computes
    import onnxruntime as ort

    assert report["onnx_max_abs_diff"] < 1e-4
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    (onnx_out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        torch_out = model(x).numpy()
    assert float(np.abs(onnx_out - torch_out).max()) < 1e-4


def test_prune_kernel_masks_stay_zero_after_finetuning(
    run_ok: Invoke, fast: tuple[str, ...], trained: Path, tmp_path: Path
) -> None:
    report = _prune(run_ok, fast, trained, tmp_path, "--granularity", "kernel")
    dense, pruned = report["dense"], report["pruned"]
    assert report["granularity"] == "kernel"
    assert TARGET * 0.98 <= report["effective_macs_ratio"] <= TARGET + 1e-9
    assert report["effective_macs_ratio"] == pytest.approx(pruned["effective_macs"] / dense["macs"])
    assert pruned["macs"] == dense["macs"]  # masks keep dense shapes
    assert report["macs_ratio"] == 1.0
    # the report says that masks do not speed up dense kernels
    assert report["note"].startswith("mask granularities")
    assert "dense CPU/GPU kernels do the same work" in report["note"]
    assert "latency does not drop" in report["note"]

    plan = PrunePlan.load(tmp_path / "plan.json")
    assert plan.granularity == "kernel" and plan.masks
    weights = load_file(str(tmp_path / "model.safetensors"))
    masked = 0
    for name, mask in plan.masks.items():
        assert weights[name].shape == mask.shape, name
        assert torch.all(weights[name][~mask] == 0), f"{name}: masked weights are not zero after finetuning"
        masked += int((~mask).sum())
    assert masked > 0

    model = _rebuild(tmp_path)
    cost = count_cost(model, DIGITS_INPUT)
    assert cost.macs == dense["macs"]
    assert cost.effective_macs == pruned["effective_macs"]


@pytest.mark.parametrize("criterion", ["taylor", "apoz"])
def test_prune_with_data_driven_criteria(
    run_ok: Invoke, fast: tuple[str, ...], trained: Path, tmp_path: Path, criterion: str
) -> None:
    # taylor and apoz refuse to run without calibration data: success means the CLI passed it
    report = _prune(run_ok, fast, trained, tmp_path, "--criterion", criterion)
    assert report["config"]["prune"]["criterion"] == criterion
    assert PrunePlan.load(tmp_path / "plan.json").meta["criterion"] == criterion
    assert 0.48 <= report["macs_ratio"] <= TARGET
    assert count_macs(_rebuild(tmp_path), DIGITS_INPUT) == report["pruned"]["macs"]


def test_prune_in_two_rounds_reaches_the_target(
    run_ok: Invoke, fast: tuple[str, ...], trained: Path, tmp_path: Path
) -> None:
    report = _prune(run_ok, fast, trained, tmp_path, "--rounds", "2")
    assert report["config"]["rounds"] == 2
    assert [r["target"] for r in report["rounds"]] == pytest.approx([TARGET**0.5, TARGET])
    assert all(r["val_accuracy_after_finetune"] is not None for r in report["rounds"])
    assert 0.45 <= report["macs_ratio"] <= TARGET
    # the composed plan refers to the base model: applied to a fresh one it gives the final architecture
    model = _rebuild(tmp_path)
    assert count_macs(model, DIGITS_INPUT) == report["pruned"]["macs"]
    assert _test_accuracy(model) == pytest.approx(report["pruned"]["accuracy"], abs=1e-9)


def test_prune_without_checkpoint_trains_first(run_ok: Invoke, fast: tuple[str, ...], tmp_path: Path) -> None:
    result = run_ok(["prune", "--model", "resnet20", "--dataset", "digits", "--train-epochs", "1",
                     "--finetune-epochs", "0", "--no-onnx", "--out", str(tmp_path), *fast])
    assert "no --checkpoint: training resnet20 for 1 epochs first" in result.stderr
    report = _report(tmp_path)
    assert len(report["training"]["history"]["train_loss"]) == 1
    assert report["rounds"][0]["val_accuracy_after_finetune"] is None  # --finetune-epochs 0
    assert count_macs(_rebuild(tmp_path), DIGITS_INPUT) == report["pruned"]["macs"]


# --------------------------------------------------------------------------------------------- groups
def test_groups_match_the_model_structure(run_ok: Invoke, tmp_path: Path) -> None:
    result = run_ok(["groups", "--model", "resnet20", "--out", str(tmp_path)])
    report = _report(tmp_path)
    assert report["command"] == "groups" and report["schema_version"] == 2

    structure = ModelStructure(_resnet20(), DIGITS_INPUT)
    expected = {g.name: (g.channels, g.macs) for g in structure.groups}
    got = {g["name"]: (g["channels"], g["macs"]) for g in report["groups"]}
    assert got == expected
    assert len(report["groups"]) == len(structure.groups) > 0
    assert report["dense"]["macs"] == count_macs(_resnet20(), DIGITS_INPUT)
    assert report["output_layers"] == ["fc"]
    for name in expected:
        assert name in result.stdout


# --------------------------------------------------------------------------------------------- demo
def test_demo_runs_the_main_job_and_prints_the_next_steps(run_ok: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--train-epochs", "1", "--supernet-epochs", "1", "--trials", "3", "--no-progress", "--threads", "1",
            "--out", str(out)]
    first = run_ok(args)
    report = _report(out)
    _check_common(report, "search")  # the demo is the main job: a search, its export and its report
    assert 0.48 <= report["macs_ratio"] <= TARGET
    assert count_macs(_rebuild(out), DIGITS_INPUT) == report["pruned"]["macs"]
    for name in ("model.onnx", "report.html", "trials.csv"):
        assert (out / name).is_file(), name
    assert "next steps" in first.output and "load_pruned" in first.output
    again = run_ok(args)  # a rerun continues the same folder (nothing to add: 3 trials are done)
    assert _report(out)["search"]["trials"] == 3 and "next steps" in again.output


def test_prune_with_per_group_keep_ratios(run_ok: Invoke, trained: Path, tmp_path: Path) -> None:
    import json

    from autoprune.engine.structure import ModelStructure
    from autoprune.models import build_model

    ratios = {"layer1.0.conv1": 0.5, "layer3.0.conv1": 0.25}
    spec = tmp_path / "ratios.json"
    spec.write_text(json.dumps(ratios))
    out = tmp_path / "run"
    run_ok(["prune", "--checkpoint", str(trained / "model.pt"), "--keep-ratios", str(spec), "--round-to", "1",
            "--finetune-epochs", "0", "--no-onnx", "--out", str(out), "--no-progress"])
    report = json.loads((out / "report.json").read_text())
    assert {k: v for k, v in report["keep_ratios"].items() if v < 1.0} == ratios
    structure = ModelStructure(build_model("resnet20", num_classes=10, in_channels=1), (1, 1, 8, 8))
    expected = structure.predict_macs({"layer1.0.conv1": 8, "layer3.0.conv1": 16})
    assert report["pruned"]["macs"] == expected
