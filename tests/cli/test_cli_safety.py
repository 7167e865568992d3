"""The command line never does silently what the user did not ask, never mixes or overwrites another run's
files, and says in one line what is wrong (issue 20). Every test runs the real CLI on digits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from autoprune.models import build_model, save_checkpoint

from .conftest import FAST, Invoke, search_once
from .test_cli_errors import _check_user_error

TINY = ("--finetune-epochs", "0", "--no-onnx", *FAST)
SMALL = ("--supernet-epochs", "1", "--bn-batches", "2", *FAST)


def _digest(folder: Path) -> dict[str, str]:
    """Every file of a folder and its content hash: proof that nothing of an earlier run changed."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, trained: Path) -> Path:
    """A finished random search of 3 trials (its supernet built from the shared trained checkpoint)."""
    return search_once(tmp_path_factory, "safety-search", ["--searcher", "random", "--trials", "3", "--checkpoint",
                                                           str(trained / "model.pt"), "--no-onnx", *SMALL])


# --- one budget per run -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args", "named"),
    [
        ("prune", ["--target-macs", "0.3", "--target-params", "0.9"], ["--target-macs 0.3", "--target-params 0.9"]),
        ("prune", ["--target-macs", "0.3", "--keep-ratios", '{"conv1": 0.5}'], ["--target-macs 0.3", "--keep-ratios"]),
        ("search", ["--target-macs", "0.3", "--target-params", "0.6"], ["--target-macs 0.3", "--target-params 0.6"]),
        ("search", ["--target-macs", "0.3", "--target-latency", "0.99"], ["--target-macs", "--target-latency 0.99"]),
        ("extract", ["--target-macs", "0.3", "--keep-ratios", '{"conv1": 0.5}'], ["--target-macs", "--keep-ratios"]),
        ("sample", ["--target-macs", "0.3", "--target-params", "0.6"], ["--target-macs", "--target-params"]),
    ],
)
def test_two_budgets_are_refused_naming_both(invoke: Invoke, searched: Path, trained: Path, tmp_path: Path,
                                             command: str, args: list[str], named: list[str]) -> None:  # fmt: skip
    out = tmp_path / "run"
    source = (["--supernet", str(searched / "supernet.pt")] if command in ("search", "extract")
              else ["--checkpoint", str(trained / "model.pt")])  # fmt: skip
    extra = list(TINY) if command == "prune" else list(SMALL) if command == "search" else list(FAST)
    if command == "extract":
        extra.remove("--no-progress")
    result = invoke([command, *source, *args, "--out", str(out), *extra])
    _check_user_error(result, out, "one budget", *named)
    assert not out.exists()  # refused before any folder was made


def test_explicit_keep_ratios_outside_the_bounds_are_refused_and_inside_honoured(
    invoke: Invoke, run_ok: Invoke, searched: Path, tmp_path: Path
) -> None:
    supernet = str(searched / "supernet.pt")
    bad = invoke(["extract", "--supernet", supernet, "--keep-ratios", '{"conv1": 0.01}', "--out",
                  str(tmp_path / "bad"), "--device", "cpu"])
    _check_user_error(bad, tmp_path / "bad", "conv1=0.01", "bounds [0.5, 1]")
    good = tmp_path / "good"
    run_ok(["extract", "--supernet", supernet, "--keep-ratios", '{"conv1": 0.5}', "--out", str(good), "--no-onnx",
            "--device", "cpu"])
    report = json.loads((good / "report.json").read_text())
    space = json.loads((searched / "report.json").read_text())["space"]
    whole = {name: g["channels"] for name, g in space["groups"].items()}
    assert report["counts"]["conv1"] == whole["conv1"] // 2  # exactly as asked
    assert all(report["counts"][n] == c for n, c in whole.items() if n != "conv1")  # the rest whole, not cut
    assert report["config"]["budget"] == "keep_ratios"  # extract records its settings


# --- resume only what was recorded --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--searcher", "tpe"], "--searcher tpe (the run has random)"),
     (["--searcher", "random", "--target-macs", "0.3"], "--target 0.3 (the run has 0.5)")],
)
def test_resume_with_other_settings_is_refused_naming_the_difference(
    invoke: Invoke, searched: Path, trained: Path, args: list[str], named: str
) -> None:
    before = _digest(searched)
    result = invoke(["search", *args, "--trials", "4", "--checkpoint", str(trained / "model.pt"), "--out",
                     str(searched), "--resume", "--no-onnx", *SMALL])
    line = _check_user_error(result, Path("/nonexistent"), "other settings", named)
    assert "Continue it with its own settings" in line
    assert _digest(searched) == before


def test_resume_of_an_empty_folder_says_there_is_nothing_to_resume(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke(["search", "--out", str(tmp_path), "--resume", *SMALL])
    _check_user_error(result, tmp_path, "nothing to resume", "drop --resume")


def test_a_resumed_search_keeps_the_dense_model_it_trained(invoke: Invoke, run_ok: Invoke, tmp_path: Path) -> None:
    """Killed after the dense stage: the resume loads OUT/dense.pt instead of training again."""
    out = tmp_path / "run"
    first = invoke(["search", "--train-epochs", "1", "--target-macs", "0.01", "--out", str(out), *SMALL])
    assert first.exit_code == 2  # the budget cannot be met: fails after the dense model and supernet finished
    assert (out / "dense.pt").is_file() and (out / "supernet.pt").is_file()
    (out / "supernet.pt").unlink()  # as if killed while the supernet trained
    (out / "supernet.optim.pt").unlink(missing_ok=True)
    dense = _digest(out)["dense.pt"]
    again = invoke(["search", "--train-epochs", "1", "--target-macs", "0.01", "--out", str(out), "--resume", *SMALL])
    assert "trained by an earlier run" in again.output and "training resnet20" not in again.output
    assert _digest(out)["dense.pt"] == dense


# --- never write into another run ---------------------------------------------------------------------


def test_prune_into_a_search_folder_is_refused_and_changes_nothing(invoke: Invoke, searched: Path,
                                                                   trained: Path) -> None:  # fmt: skip
    before = _digest(searched)
    result = invoke(["prune", "--checkpoint", str(trained / "model.pt"), "--out", str(searched), *TINY])
    _check_user_error(result, Path("/nonexistent"), "already holds a search run", "--overwrite")
    assert _digest(searched) == before


def test_train_over_another_run_is_refused_and_overwrite_replaces_it_whole(
    invoke: Invoke, run_ok: Invoke, trained: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run_ok(["prune", "--checkpoint", str(trained / "model.pt"), "--out", str(out), *TINY])
    before = _digest(out)
    refused = invoke(["train", "--train-epochs", "1", "--out", str(out), *FAST])
    _check_user_error(refused, Path("/nonexistent"), "already holds a prune run")
    assert _digest(out) == before
    run_ok(["train", "--train-epochs", "1", "--out", str(out), "--overwrite", *FAST])
    assert not (out / "plan.json").exists() and (out / "model.pt").is_file()  # replaced whole, not mixed
    assert json.loads((out / "report.json").read_text())["command"] == "train"


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(invoke: Invoke, tmp_path: Path) -> None:
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    result = invoke(["train", "--train-epochs", "1", "--out", str(tmp_path), "--overwrite", *FAST])
    _check_user_error(result, tmp_path, "not an autoprune run folder")
    assert keep.read_text() == "mine"


def test_the_current_folder_is_not_a_run_folder(invoke: Invoke, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    result = invoke(["train", "--train-epochs", "1", "--out", "", *FAST])
    _check_user_error(result, tmp_path, "current folder")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_out_fails_in_one_line_before_any_work(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / ("x" * 300)  # over-long file name: the file system refuses it
    result = invoke(["train", "--train-epochs", "50", "--out", str(out), *FAST])
    line = _check_user_error(result, tmp_path / "none", "cannot write the run folder")
    assert "name too long" in line.lower()
    assert "epoch" not in result.output  # nothing was trained first
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke(["train", "--train-epochs", "50", "--out", str(blocker / "sub"), *FAST])
    _check_user_error(result, tmp_path / "none", "cannot write the run folder")


def test_a_failed_command_leaves_no_claimed_folder(invoke: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke(["train", "--model", "resnet21", "--out", str(out), *FAST])
    _check_user_error(result, out, "'resnet21'")
    assert not out.exists()  # the retry can use the same --out


# --- files that are not what they claim -------------------------------------------------------------


def test_a_supernet_is_refused_as_a_dense_checkpoint(invoke: Invoke, searched: Path, tmp_path: Path) -> None:
    result = invoke(["prune", "--checkpoint", str(searched / "supernet.pt"), "--out", str(tmp_path / "r"), *TINY])
    _check_user_error(result, tmp_path / "r", "is a supernet", "--supernet")


def test_non_finite_weights_are_an_error(invoke: Invoke, tmp_path: Path) -> None:
    model = build_model("resnet20", num_classes=10, in_channels=1)
    with torch.no_grad():
        model.conv1.weight[0, 0, 0, 0] = float("nan")
    ckpt = save_checkpoint(model, tmp_path / "nan.pt", {"model": "resnet20"})
    result = invoke(["prune", "--checkpoint", str(ckpt), "--out", str(tmp_path / "r"), *TINY])
    _check_user_error(result, tmp_path / "r", "non-finite", "'conv1.weight'")


def test_a_nan_difference_never_passes_the_onnx_check(tmp_path: Path) -> None:
    from autoprune.engine.export import export_onnx
    from autoprune.errors import ExportError

    model = build_model("resnet20", num_classes=10, in_channels=1)
    with torch.no_grad():
        model.fc.bias.fill_(float("nan"))
    with pytest.raises(ExportError, match="not finite"):
        export_onnx(model, (1, 1, 8, 8), tmp_path / "m.onnx")


@pytest.mark.parametrize(
    ("make", "named"),
    [("random", "corrupt"), ("devnull", "not a regular file"), ("empty", "is empty")],
)
def test_bad_files_are_described_for_what_they_are(invoke: Invoke, tmp_path: Path, make: str, named: str) -> None:
    path = Path("/dev/null") if make == "devnull" else tmp_path / "bad.pt"
    if make == "random":
        path.write_bytes(bytes(range(256)) * 8)
    elif make == "empty":
        path.write_bytes(b"")
    for option in ("--checkpoint", "--supernet"):
        command = "prune" if option == "--checkpoint" else "search"
        out = tmp_path / f"r-{command}"
        result = invoke([command, option, str(path), "--out", str(out), *FAST])
        line = _check_user_error(result, out, named)
        assert "unpickle" not in line  # a damaged file is not an unsafe pickle


def test_truncated_supernet_message_is_whole(invoke: Invoke, searched: Path, tmp_path: Path) -> None:
    data = (searched / "supernet.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 3])
    result = invoke(["search", "--supernet", str(cut), "--out", str(tmp_path / "r"), *FAST])
    line = _check_user_error(result, tmp_path / "r", "truncated")
    assert line.rstrip().endswith("torch.save(state_dict)")  # no sentence cut in the middle
    assert "your checkpoint file is)" not in line


def test_a_supernet_of_another_model_names_its_model(invoke: Invoke, searched: Path, tmp_path: Path) -> None:
    result = invoke(["search", "--supernet", str(searched / "supernet.pt"), "--model", "resnet32", "--out",
                     str(tmp_path / "r"), *FAST])
    line = _check_user_error(result, tmp_path / "r", "does not fit", "--model resnet20")
    assert "Error(s) in loading" not in line


@pytest.mark.parametrize(
    ("command", "args", "named"),
    [
        ("train", ["--train-epochs", "0"], "--train-epochs 0"),
        ("supernet", ["--supernet-epochs", "0"], "--supernet-epochs 0"),
        ("supernet", ["--num-random", "-1", "--supernet-epochs", "1"], "--num-random -1"),
        ("search", ["--bn-batches", "-3"], "--bn-batches -3"),
        ("sensitivity", ["--max-drop", "-1"], "--max-drop -1"),
        ("search", ["--trials", "0"], "--trials 0"),
        ("train", ["--lr", "-1"], "--lr -1.0 must be > 0"),
        ("train", ["--batch-size", "0"], "--batch-size 0 must be >= 1"),
        ("prune", ["--finetune-lr", "0"], "--finetune-lr 0.0 must be > 0"),
        ("prune", ["--batch-size", "0"], "--batch-size 0 must be >= 1"),
        ("supernet", ["--lr", "0"], "--lr 0.0 must be > 0"),
        ("sample", ["--finetune-lr", "-0.1"], "--finetune-lr -0.1 must be > 0"),
        ("sample", ["--final-epochs", "-1"], "--final-epochs -1 must be >= 0"),
        ("prune", ["--finetune-epochs", "-1"], "--finetune-epochs -1 must be >= 0"),
        ("train", ["--image-size", "0"], "--image-size 0 must be >= 1"),
        # refused before the dense model and the supernet are trained, not after
        ("search", ["--storage", "foo://bar"], "cannot open storage foo://bar"),
        ("search", ["--searcher", "greedy", "--study-name", "s"], "'greedy' keeps no study"),
        ("search", ["--space", "nonexist.yaml"], "'nonexist.yaml' is neither a bundled space"),
        ("search", ["--searcher-option", "bogus=1"], "has no option 'bogus'"),
        ("search", ["--pruner", "bogus"], "unknown pruner 'bogus'"),
        ("search", ["--searcher", "nsga2", "--pruner", "median"], "pruner='median' cannot be used with"),
        ("search", ["--target-latency", "0.5", "--latency-form", "bogus"], "--latency-form 'bogus'"),
        ("search", ["--searcher-option", "n_startup_trials=-3"], "n_startup_trials=-3 must be a non-negative"),
        ("search", ["--searcher", "ddpg", "--searcher-option", "learning_rate=0"], "learning_rate=0.0 is out of range"),
        ("search", ["--searcher", "nsga2", "--searcher-option", "population_size=1"], "population_size"),
        ("train", ["--precision", "fp16"], "--precision 'fp16': use one of fp32, bf16"),
        ("supernet", ["--precision", "half"], "--precision 'half'"),
    ],
)
def test_values_that_do_nothing_or_make_no_sense_are_refused(invoke: Invoke, tmp_path: Path, command: str,
                                                               args: list[str], named: str) -> None:  # fmt: skip
    out = tmp_path / "r"
    result = invoke([command, *args, "--out", str(out), *FAST])
    _check_user_error(result, out, named)
    assert not out.exists()
    assert "epoch 1/" not in result.output  # refused before any training (a trained epoch prints this line)


def test_an_unreachable_prune_target_suggests_only_prune_options(invoke: Invoke, trained: Path,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    result = invoke(["prune", "--checkpoint", str(trained / "model.pt"), "--target-macs", "0.001", "--out",
                     str(tmp_path / "r"), *TINY])
    line = _check_user_error(result, tmp_path / "r", "cannot be met", "--round-to")
    assert "min_ratio" not in line and "search more groups" not in line


def test_keep_ratios_prune_does_not_claim_a_target(run_ok: Invoke, trained: Path, tmp_path: Path) -> None:
    result = run_ok(["prune", "--checkpoint", str(trained / "model.pt"), "--keep-ratios", '{"conv1": 0.5}',
                     "--round-to", "1", "--out", str(tmp_path / "r"), *TINY])
    assert "target 1.000" not in result.output and "explicit" in result.output


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("prune", ["--finetune-epochs", "0", "--no-onnx"]),
        ("sample", ["--finetune-epochs", "0", "--samples", "2", "--no-onnx"]),
        ("sensitivity", []),
    ],
)
def test_a_precision_for_a_run_that_trains_nothing_is_refused(invoke: Invoke, trained: Path, tmp_path: Path,
                                                              command: str, args: list[str]) -> None:  # fmt: skip
    out = tmp_path / "r"
    result = invoke([command, "--checkpoint", str(trained / "model.pt"), *args, "--precision", "bf16",
                     "--out", str(out), *FAST])
    _check_user_error(result, out, "--precision bf16 has no effect", "--checkpoint given")
    assert not out.exists()


def test_bf16_training_is_recorded_and_a_resume_may_not_change_it(invoke: Invoke, run_ok: Invoke,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "t"
    run_ok(["train", "--model", "resnet20", "--epochs", "1", "--precision", "bf16", "--out", str(out), *FAST])
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["cli"]["precision"] == "bf16"
    assert report["training"]["config"]["precision"] == "bf16"
    before = _digest(out)
    result = invoke(["train", "--model", "resnet20", "--epochs", "1", "--out", str(out), *FAST])
    _check_user_error(result, Path("/nonexistent"), "precision")
    assert _digest(out) == before


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_that_only_emulates_it_runs_with_one_warning_line(invoke: Invoke, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         native: bool) -> None:  # fmt: skip
    from autoprune import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    out = tmp_path / "t"
    result = invoke(["train", "--model", "resnet20", "--epochs", "1", "--precision", "bf16", "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if "emulated" in line]
    if native:
        assert not warned
    else:  # it still trains in bf16 as asked (never silently switched), and says so once, with the fix
        assert len(warned) == 1 and "--precision bf16" in warned[0] and "use fp32" in warned[0]
        assert json.loads((out / "report.json").read_text())["training"]["config"]["precision"] == "bf16"


def test_report_of_a_file_says_it_is_a_file(invoke: Invoke, trained: Path) -> None:
    result = invoke(["report", str(trained / "report.json")])
    line = _check_user_error(result, Path("/nonexistent"), "is a file, not a folder", str(trained))
    assert "does not exist" not in line
