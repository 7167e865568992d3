"""User mistakes: exit code 2, one clear ``error:`` line naming the bad value, no traceback, no report."""

from __future__ import annotations

import fractions
import pickle
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from typer.testing import Result

Invoke = Callable[[Sequence[str]], Result]

# Options that make a run that got past validation finish quickly anyway.
QUIET = ("--no-progress", "--threads", "1")
TINY_TRAIN = ("--epochs", "1", *QUIET)
TINY = ("--train-epochs", "1", "--finetune-epochs", "1", "--no-onnx", *QUIET)


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _check_user_error(result: Result, out: Path, *mentions: str) -> str:
    """Exit 2 through ``typer.Exit`` (not an escaped exception), one ``error:`` line that names every
    item of ``mentions``, no traceback, and no report.json (a failed command writes none)."""
    output = _plain(result.output)
    assert result.exit_code == 2, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert errors[0] in _plain(result.stderr)  # errors go to stderr, results to stdout
    for text in mentions:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    assert not (out / "report.json").exists()
    return errors[0]


BAD_VALUES = [
    (["--model", "resnet21"], ["'resnet21'", "resnet20"]),
    (["--dataset", "digitz"], ["'digitz'", "digits"]),
    (["--criterion", "bogus"], ["'bogus'", "l1", "taylor"]),
    (["--target-macs", "1.7"], ["1.7", "(0, 1]"]),
    (["--target-macs", "0"], ["--target-macs 0", "(0, 1]"]),
    (["--target-macs", "-0.5"], ["-0.5", "(0, 1]"]),
    (["--target-params", "2"], ["--target-params 2", "(0, 1]"]),
    (["--granularity", "bogus"], ["'bogus'", "channel", "kernel"]),
    (["--scope", "everywhere"], ["'everywhere'", "local", "global"]),
    (["--round-to", "0"], ["--round-to 0"]),
    (["--rounds", "0"], ["--rounds 0"]),
    (["--threads", "0"], ["--threads 0"]),
    (["--device", "tpu9"], ["'tpu9'", "cpu"]),
    (["--granularity", "kernel", "--target-params", "0.5"], ["'kernel'", "target_macs"]),
    (["--keep-ratios", '{"layer9": 0.5}'], ["'layer9'", "layer1.0.conv1"]),
    (["--keep-ratios", '{"layer1.0.conv1": 1.5}'], ["1.5", "(0, 1]"]),
    (["--keep-ratios", "{not json"], ["not valid JSON"]),
    (["--keep-ratios", "missing.json"], ["'missing.json'"]),
]


@pytest.mark.parametrize(("args", "mentions"), BAD_VALUES, ids=[" ".join(args) for args, _ in BAD_VALUES])
def test_bad_values_are_named(invoke: Invoke, tmp_path: Path, args: list[str], mentions: list[str]) -> None:
    out = tmp_path / "run"
    result = invoke(["prune", "--dataset", "digits", "--out", str(out), *TINY, *args])
    _check_user_error(result, out, *mentions)


def test_unknown_criterion_fails_before_training(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(["prune", "--criterion", "l3", "--train-epochs", "50", "--out", str(out), "--no-progress"])
    _check_user_error(result, out, "'l3'", "'l1'")  # a close match is suggested
    assert "training" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("command", ["train", "groups"])
def test_unknown_model_on_other_commands(invoke: Invoke, tmp_path: Path, command: str) -> None:
    out = tmp_path / "run"
    result = invoke([command, "--model", "resnet21", "--out", str(out)])
    _check_user_error(result, out, "'resnet21'", "resnet20")


def test_missing_dataset_folder_names_the_path_and_download(invoke: Invoke, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    out = tmp_path / "run"
    result = invoke(["train", "--dataset", "fashion-mnist", "--data-dir", str(missing), "--out", str(out), *TINY_TRAIN])
    _check_user_error(result, out, str(missing), "--download", "fashion-mnist")
    assert not missing.exists()


class _Payload:
    """Unpickling this would create ``path``: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content", ["object", "code", "plain-pickle"])
def test_pickled_objects_are_refused(invoke: Invoke, tmp_path: Path, content: str) -> None:
    marker = tmp_path / "code-ran"
    ckpt = tmp_path / "model.pt"
    if content == "object":
        torch.save({"conv1.weight": torch.zeros(1), "extra": fractions.Fraction(1, 3)}, ckpt)
    elif content == "code":
        torch.save(_Payload(marker), ckpt)
    else:  # not torch.save's zip format: what pickle.dump writes
        ckpt.write_bytes(pickle.dumps(_Payload(marker)))
    out = tmp_path / "run"
    result = invoke(["prune", "--checkpoint", str(ckpt), "--out", str(out), *TINY])
    line = _check_user_error(result, out, str(ckpt))
    assert "unpickle" in line or "weights_only" in line
    assert not marker.exists()


def test_truncated_checkpoint(invoke: Invoke, trained: Path, tmp_path: Path) -> None:
    data = (trained / "model.pt").read_bytes()
    ckpt = tmp_path / "half.pt"
    ckpt.write_bytes(data[: len(data) // 2])
    out = tmp_path / "run"
    result = invoke(["prune", "--checkpoint", str(ckpt), "--out", str(out), *TINY])
    _check_user_error(result, out, str(ckpt), "truncated")


def test_checkpoint_of_another_model(invoke: Invoke, trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(["prune", "--model", "resnet32", "--checkpoint", str(trained / "model.pt"), "--out", str(out),
                     *TINY])
    _check_user_error(result, out, "does not fit", "--model resnet20")  # the checkpoint's meta names its model


def test_missing_checkpoint(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(["train", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(out), *TINY_TRAIN])
    _check_user_error(result, out, "nope.pt", "does not exist")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda(invoke: Invoke, tmp_path: Path, device: str) -> None:
    out = tmp_path / "run"
    result = invoke(["train", "--device", device, "--epochs", "1", "--out", str(out), "--no-progress"])
    _check_user_error(result, out, f"--device {device}", "--device cpu")


def test_out_is_an_existing_file(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.write_text("not a folder")
    result = invoke(["groups", "--out", str(out)])
    _check_user_error(result, tmp_path / "unused", str(out), "not a folder")
    assert out.read_text() == "not a folder"


def test_demo_checks_its_budget_before_training(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(["demo", "--target-macs", "1.7", "--train-epochs", "50", "--out", str(out), "--no-progress"])
    _check_user_error(result, out, "1.7", "(0, 1]")
    assert not out.exists()


def test_malformed_option_is_a_usage_error(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke(["train", "--epochs", "abc", "--out", str(tmp_path / "run")])
    output = _plain(result.output)
    assert result.exit_code == 2
    assert "'--epochs'" in output and "Traceback" not in output


def test_interrupt_keeps_files_and_exits_130(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    import autoprune.training

    monkeypatch.setattr(autoprune.training, "train", interrupted)
    result = invoke(["train", "--epochs", "1", "--out", str(tmp_path), "--no-progress", "--device", "cpu"])
    assert result.exit_code == 130
    assert "interrupted" in _plain(result.output)
    assert "no result was written yet" in _plain(result.output)  # not "files are kept" of an empty folder
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["train", "search", "sample"])
def test_a_model_that_cannot_take_the_data_shape_fails_before_work(invoke: Invoke, tmp_path: Path,
                                                                   command: str) -> None:
    user = tmp_path / "fixed.py"
    user.write_text(
        "import torch.nn as nn\n"
        "def make(num_classes=10, in_channels=3):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 8, 3), nn.Flatten(), nn.Linear(8 * 30 * 30, num_classes))\n"
    )
    out = tmp_path / "run"
    result = invoke([command, "--model", f"{user}:make", "--out", str(out), "--no-progress"])
    _check_user_error(result, out, "(2, 1, 8, 8)", "--image-size")
