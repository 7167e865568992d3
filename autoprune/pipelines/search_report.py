"""The search pipeline's last step, as ``autoprune search`` ends: test metrics, export and ``report.json``.

:func:`autoprune.pipelines.search.search_supernet` given a :class:`ReportRequest` ends here, once the winner
is fixed on validation data: the test split is read (once) for the dense model, the uniform candidate and
the winner; the winner is exported with its shared weights (``plan.json``, ``model.safetensors``, checked
``model.onnx``); the dense model and the winner are timed together (one interleaved run per batch size,
in eager and deploy form and ONNX Runtime: ``latency``, ``onnxruntime``); under a latency budget the
re-measurement that fixed the winner goes to ``latency_check``; the Pareto front goes to ``pareto.json``;
a copy of the winner is finetuned if asked (reported apart: the export stays unfinetuned); and
``report.json`` is written with the run's figures. The command and the Python API share this one path, so
they write the same report::

    outcome = search_supernet(supernet, space, splits, searcher="tpe", trials=100, out=Path("runs/s"),
                              report=ReportRequest(dense_model=dense))
    outcome.report.data["pruned"]["accuracy"]     # what report.json holds
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from autoprune.data import DataSplits
from autoprune.engine.export import export_onnx, save_weights
from autoprune.engine.plan import PrunePlan
from autoprune.errors import AutoPruneError, ExportError
from autoprune.metrics import Accuracy, evaluate_accuracy, paired_mean_se
from autoprune.report import RunReport, binomial_se, model_metrics, recalibrated
from autoprune.search import Trial, TrialLog, pareto_front
from autoprune.search.base import best_trial
from autoprune.search_spaces import SearchSpace
from autoprune.search_spaces.budget import budget_use_summary
from autoprune.supernet import Supernet
from autoprune.training import TrainConfig, train

if TYPE_CHECKING:
    from autoprune.pipelines.search import SupernetSearch, Winner


@dataclass
class ReportRequest:
    """Asks :func:`~autoprune.pipelines.search.search_supernet` to end as ``autoprune search`` does.

    Attributes:
        dense_model: The trained dense model, measured beside the winner (test split, and validation);
            None: the report's ``dense`` holds the supernet's dense MACs and params only.
        finetune_epochs: Finetune a copy of the winner this many epochs (``finetuned_metrics``; 0: none).
        precision: Arithmetic of that finetuning (:mod:`autoprune.precision`).
        onnx: Also export ``model.onnx``, checked against PyTorch.
        figures: Draw the run's figures into ``OUT/figures``.
        run_report: The report to fill (the command's carries its options as ``config.cli``); default: a
            new one named by ``model_name`` (default: the model's class) and the dataset of the splits.
        model_name: The model's name in a new report.
        config: Entries of the report's ``config`` that only the caller knows (the command: ``workers``,
            the ``rungs`` asked for, the ``supernet`` file, the dense ``checkpoint``); they replace defaults.
        before_winner: Called when this process's search has ended, before the winner is fixed from the
            run folder's trial log (the command waits there for its worker processes).
    """

    dense_model: nn.Module | None = None
    finetune_epochs: int = 0
    precision: str = "fp32"
    onnx: bool = True
    figures: bool = True
    run_report: RunReport | None = None
    model_name: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    before_winner: Callable[[], None] | None = None


@dataclass
class SearchReport:
    """The finished run: metrics objects of the dense model, the uniform candidate and the winner, files, report.

    Attributes:
        dense: Metrics of the dense model (see :data:`autoprune.report_schema.METRICS_DOC`).
        uniform: Metrics of the uniform candidate, extracted as the winner is.
        pruned: Metrics of the winner (the exported model).
        files: Run-folder-relative paths of the files written.
        data: ``report.json`` as written.
        path: Where it was written.
    """

    dense: dict[str, Any]
    uniform: dict[str, Any]
    pruned: dict[str, Any]
    files: dict[str, str]
    data: dict[str, Any]
    path: Path


def logged_trials(out: Path) -> list[Trial]:
    """Every trial of the run folder's log (all processes of a search share it).

    Raises:
        AutoPruneError: no trial completed within the budget.
    """
    log = TrialLog(out)
    trials = log.read()
    if not any(t.state == "complete" and t.feasible for t in trials):
        raise AutoPruneError(f"no trial of the search completed ({len(trials)} trials, see {log.csv}); "
                             "check the errors there, then rerun with --resume")
    return trials


def write_export(out: Path, model: nn.Module, plan: PrunePlan, input_shape: tuple[int, ...], report: RunReport,
                 *, onnx: bool) -> dict[str, str]:  # fmt: skip
    """The one export of every run: ``plan.json``, ``model.safetensors`` and (checked) ``model.onnx`` in ``out``.

    Returns the ``files`` entries written; the ONNX check's largest difference goes to the report. A failed
    ONNX check removes ``model.onnx`` and is recorded as ``onnx_error``: the report is still written, and
    :meth:`RunReport.write` raises the error after writing it.
    """
    plan.save(out / "plan.json")
    save_weights(model, out / "model.safetensors")
    files = {"plan": "plan.json", "weights": "model.safetensors"}
    if onnx:
        try:
            report.set(onnx_max_abs_diff=export_onnx(model, input_shape, out / "model.onnx"))
            files["onnx"] = "model.onnx"
        except ExportError as exc:  # the report is still written; RunReport.write then raises it, one line
            (out / "model.onnx").unlink(missing_ok=True)
            report.set(onnx_error=str(exc))
    return files


def jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    """Searcher options as JSON can hold them (anything else as its text)."""
    return {k: v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
            for k, v in options.items()}


def vs_uniform_on_test(pruned: Accuracy, uniform: Accuracy) -> dict[str, Any]:
    """The exported model minus the uniform candidate on the test split, paired per sample, with a statement.

    Reported only: the test split is read once, after the winner is fixed, and never chooses anything.
    """
    assert pruned.correct is not None and uniform.correct is not None
    difference, se = paired_mean_se(pruned.correct, uniform.correct)
    if not np.any(pruned.correct != uniform.correct):
        verdict = "the same predictions as the uniform candidate on every one"
    else:
        verdict = (f"{100 * difference:+.2f} ± {100 * se:.2f} points (paired) against the uniform candidate"
                   + (", within 2 standard errors" if abs(difference) <= 2 * se else ""))
    return {"difference": difference, "se": se, "samples": pruned.samples,
            "statement": f"On the {pruned.samples} test samples (read once, never used to choose): {verdict}."}


def write_search_report(
    supernet: Supernet,
    space: SearchSpace,
    splits: DataSplits,
    outcome: SupernetSearch,
    winner: Winner,
    trials: list[Trial],
    out: Path,
    request: ReportRequest,
    *,
    config: dict[str, Any],
    seed: int,
    device: torch.device | str,
    progress: bool,
) -> SearchReport:
    """Measure, export and report the winner that ``winner`` fixed over ``trials``.

    ``outcome.model`` is the winner extracted; ``config`` the search's settings for the report (updated
    with ``request.config``). Reads the test split, once, here.
    """
    shape = splits.input_shape(1)
    report = request.run_report or RunReport("search", request.model_name or type(supernet.model).__name__,
                                             splits.name, seed, out)
    report.data_shape = {"num_classes": splits.num_classes, "in_channels": splits.in_channels,
                         "image_size": list(splits.image_size)}
    assert outcome.model is not None and outcome.choice is not None
    choice, counts, model = outcome.choice, winner.counts, outcome.model
    uniform_model = supernet.extract(choice.uniform.score.counts, calibration=winner.calibration,
                                     bn_batches=len(winner.calibration))
    test_loader = splits.test_loader()
    dense = _dense_metrics(request.dense_model, supernet, splits, test_loader, device, winner.calibration)
    # each sample's hit kept, so the winner is compared with the uniform candidate on the same test samples
    hits = {name: evaluate_accuracy(m.to(device), test_loader, device=device, per_sample=True)
            for name, m in (("pruned", model), ("uniform", uniform_model))}  # fmt: skip
    pruned = model_metrics(model, shape, test_loader=test_loader, device=device, accuracy=hits["pruned"])
    uniform = model_metrics(uniform_model, shape, test_loader=test_loader, device=device, accuracy=hits["uniform"])
    files = write_export(out, model, supernet.plan(counts), shape, report, onnx=request.onnx)
    report.set(dense=dense, pruned=pruned, uniform=uniform,
               vs_uniform_test=vs_uniform_on_test(hits["pruned"], hits["uniform"]))
    # the uniform candidate is timed in the same interleaved runs as the winner and the dense model, so the
    # table's latencies compare (timed apart on a busy machine, one structure read 7.5 and 12.4 ms)
    report.measure_latency(request.dense_model, model, shape, onnx=out / "model.onnx" if "onnx" in files else None,
                           others={"uniform": uniform_model})
    if winner.latency_check is not None:
        report.set(latency_check=winner.latency_check)
    front = pareto_front(trials)
    (out / "pareto.json").write_text(json.dumps([t.to_dict() for t in front], indent=1))
    files["pareto"] = "pareto.json"
    files.update(trials="trials.csv", trials_log="trials.jsonl")
    if request.finetune_epochs > 0:
        tuned = copy.deepcopy(model)
        train(tuned, splits.train_loader(128, seed=seed), TrainConfig(epochs=request.finetune_epochs, lr=0.01,
                                                                        precision=request.precision),
              val_loader=splits.val_loader(), device=device, progress=progress, description="finetune")
        report.set(finetuned_metrics=model_metrics(tuned, shape, test_loader=test_loader, device=device),
                   finetune_epochs=request.finetune_epochs)
    summary = outcome.result.summary()
    best = best_trial(trials)
    summary.update(trials=len(trials), best=None if best is None else best.to_dict(),
                   pareto=[t.to_dict() for t in front])
    space_counts = {k: v for k, v in counts.items() if k in space.names}
    evaluated = [t.counts for t in trials if t.result is not None and t.feasible]
    config.update(request.config)
    report.set(
        dense=dense, pruned=pruned, uniform=uniform, counts=counts, keep_ratios=space.ratios(space_counts),
        reference=outcome.reference, search=summary, searcher_state=outcome.searcher_state,
        evaluator=outcome.evaluator, space=space.to_dict(), files=files, finetuned=False,
        **{k: v for k, v in choice.to_dict().items() if k != "uniform"}, uniform_rescored=choice.uniform.to_dict(),
        budget_use={**space.budget_use(space_counts), "evaluated": budget_use_summary(space, evaluated)},
        config=config,
    )  # fmt: skip
    path = report.write()
    if request.figures:  # drawn from the report just written
        from autoprune.analysis.plots import plot_run

        files.update({f"figure_{name}": str(p.relative_to(out)) for name, p in plot_run(out).items()})
        report.set(files=files)
        path = report.write()
    return SearchReport(dense=dense, uniform=uniform, pruned=pruned, files=files,
                        data=json.loads(path.read_text()), path=path)


def _dense_metrics(dense_model: nn.Module | None, supernet: Supernet, splits: DataSplits, test_loader: Any,
                   device: torch.device | str, calibration: Any) -> dict[str, Any]:  # fmt: skip
    """The dense model on the test split (with its own BatchNorm statistics and, as ``recalibrated``, with
    the winner's adaptive BN) and, beside the winner's re-scored val accuracy, on validation."""
    if dense_model is None:
        return {"macs": supernet.structure.dense_macs, "params": supernet.structure.dense_params}
    dense = model_metrics(dense_model, splits.input_shape(1), test_loader=test_loader, device=device)
    again = recalibrated(dense_model, calibration, test_loader, device=device)
    if again is not None:
        dense["recalibrated"] = again
    dense["val_accuracy"] = evaluate_accuracy(dense_model, splits.val_loader(), device=device).top1
    dense["val_accuracy_se"] = binomial_se(dense["val_accuracy"], len(splits.val))  # type: ignore[arg-type]
    return dense
