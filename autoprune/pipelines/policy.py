"""One policy, every budget: train a budget-conditioned RL agent once, answer any target of its range later.

Training is an ordinary ``autoprune search`` with an RL searcher and a target range: the searcher draws
each episode's target from the range (:mod:`autoprune.search.rl`), the run's budget is the range's upper
end (every trial meets it; the report's winner is fixed at it as usual), and the agent is saved in the
run folder as ``policy.zip`` (SB3's format) with its sidecar ``policy.json``, both listed in
``report.json``'s ``files`` and described under ``policy`` (:func:`training_options`,
:func:`record_policy`).

Answering reads no trial and trains nothing (:func:`answer_targets`): per target, one deterministic
rollout of the saved policy gives a candidate; the candidate and the uniform candidate at that target are
re-scored on the whole validation split as the honest-winner rule does
(:func:`~autoprune.search.winner.choose_winner`), the better one is exported, and the run is reported
exactly as a search is (:func:`~autoprune.pipelines.search_report.write_search_report`: test split read
once, after the winner is fixed). One target: the run folder itself; a list of targets: one sub-folder
per target (``target-0.45/``), each a complete search run folder, and ``answers.json`` listing them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from autoprune._jsonfile import write_json_atomic
from autoprune.data import DataSplits
from autoprune.defaults import DEFAULT_HOLDOUT
from autoprune.envs import parse_target_range
from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult, FullScore, SupernetEvaluator
from autoprune.pipelines.holdout import holdout_scorer, set_aside
from autoprune.pipelines.search import SupernetSearch, Winner, rescore_calibration
from autoprune.pipelines.search_report import ReportRequest, SearchReport, write_search_report
from autoprune.report import RunReport
from autoprune.search import SearchResult, Trial, TrialLog
from autoprune.search.rl import POLICY_FILE, RLSearcher, SavedPolicy
from autoprune.search.rl.policy import sidecar_path
from autoprune.search.winner import choose_winner, judge_on_holdout
from autoprune.search_spaces import SearchSpace
from autoprune.supernet import Supernet

_BUDGETS = {"macs": "target_macs", "params": "target_params"}


def training_budget(searcher: str, target_range: str, **given: float | None) -> tuple[str, float, tuple[float, float]]:
    """The budget of a training run over ``target_range`` (``"0.3:0.7"`` or ``"params:0.3:0.7"``).

    Returns the budget option (``target_macs`` or ``target_params``), its target (the range's upper end)
    and the range.

    Raises:
        AutoPruneError: a searcher that is not an RL agent, a malformed range, or a budget option given too.
    """
    from autoprune.search import SEARCHERS

    if not issubclass(SEARCHERS.get(searcher), RLSearcher):
        raise AutoPruneError(f"--target-range trains one budget-conditioned RL agent; --searcher {searcher} is not "
                             "one: use --searcher ddpg, td3, sac or ppo (or drop --target-range and give one budget)")
    parts = target_range.split(":")
    metric = parts[0] if len(parts) == 3 else "macs"
    text = ":".join(parts[-2:])
    if metric not in _BUDGETS:
        raise AutoPruneError(f"--target-range {target_range}: the budget metric {metric!r} must be macs or params, "
                             "e.g. 0.3:0.7 (MACs) or params:0.3:0.7")
    chosen = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
    if chosen:
        raise AutoPruneError(f"--target-range {target_range} is the run's budget: drop {' and '.join(chosen)} (answer "
                             "one target later with --policy OUT/policy.zip --target-macs T)")
    low, high = parse_target_range(text)
    return _BUDGETS[metric], high, (low, high)


def training_options(target_range: tuple[float, float], out: Path, **meta: Any) -> dict[str, Any]:
    """Searcher options of a training run: the range, where to save the policy, what its sidecar records."""
    return {"target_range": list(target_range), "save_policy": str(out / POLICY_FILE),
            "policy_meta": {k: v for k, v in meta.items() if v is not None}}


def record_policy(report: SearchReport, run_report: RunReport, out: Path) -> SearchReport:
    """List the saved policy in a finished training run's ``report.json`` (``files`` and ``policy``); rewrite it.

    Raises:
        AutoPruneError: the search wrote no policy (it ended before its searcher closed).
    """
    zip_path = out / POLICY_FILE
    if not zip_path.is_file():
        raise AutoPruneError(f"the search wrote no {zip_path}; rerun it with --resume")
    saved = SavedPolicy.load(zip_path)
    files = {**report.files, "policy": POLICY_FILE, "policy_meta": sidecar_path(zip_path).name}
    run_report.set(files=files, policy=_describe(saved, POLICY_FILE))
    path = run_report.write()
    return dataclasses.replace(report, files=files, data=json.loads(path.read_text()), path=path)


def parse_targets(text: str) -> list[float]:
    """``--targets 0.35,0.45,0.55`` as floats (each in (0, 1], distinct).

    Raises:
        AutoPruneError: not a comma-separated list of fractions.
    """
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise AutoPruneError(f"--targets {text!r} must be budget fractions separated by commas, e.g. 0.35,0.45"
                             ) from None
    if not values or any(not 0.0 < v <= 1.0 for v in values) or len(set(values)) != len(values):
        raise AutoPruneError(f"--targets {text!r} must be distinct fractions in (0, 1] separated by commas, "
                             "e.g. 0.35,0.45")
    return values


def policy_targets(saved: SavedPolicy, *, targets: str | None, **given: float | None) -> list[float]:
    """The targets to answer: ``--targets`` or the one budget option, in the policy's metric and trained range.

    Raises:
        AutoPruneError: no target, two ways of giving them, another metric, or a target outside the range.
    """
    chosen = {k: v for k, v in given.items() if v is not None}
    want = _BUDGETS.get(saved.info.metric, "target_macs")
    flag = "--" + want.replace("_", "-")
    if (targets is not None and chosen) or len(chosen) > 1:
        shown = ", ".join(["--targets"] * (targets is not None) + ["--" + k.replace("_", "-") for k in chosen])
        raise AutoPruneError(f"give the targets to answer once, not {shown}: {flag} T, or --targets T1,T2")
    if targets is None and not chosen:
        raise AutoPruneError(f"--policy answers given targets: add {flag} T (or --targets T1,T2,...) inside its "
                             f"range {_range(saved)}")
    if chosen and want not in chosen:
        raise AutoPruneError(f"{saved.path} was trained on a {saved.info.metric} budget: give {flag} "
                             f"{next(iter(chosen.values()))}, not --{next(iter(chosen)).replace('_', '-')}")
    values = parse_targets(targets) if targets is not None else [float(chosen[want])]
    return [saved.check_target(t, flag if targets is None else "--targets") for t in values]


def check_policy_run(saved: SavedPolicy, *, model: str, dataset: str) -> None:
    """Refuse to answer for a model or dataset other than the policy's (when its sidecar records them)."""
    for what, mine, given in (("model", saved.info.model, model), ("dataset", saved.info.dataset, dataset)):
        if mine is not None and mine != given:
            raise AutoPruneError(f"{saved.path} was trained for --{what} {mine}, not {given}: pass --{what} {mine} "
                                 f"(or train a policy for {given} with --target-range)")


def policy_space(saved: SavedPolicy, supernet: Supernet, given: SearchSpace | None) -> SearchSpace:
    """The space to answer over: ``given`` (``--space``) when it is the policy's, else the one its sidecar holds.

    Raises:
        AutoPruneError: ``given`` differs from the policy's space, or the sidecar's space does not fit the model.
    """
    from autoprune.search_spaces import space_from_dict

    space = given if given is not None else space_from_dict(saved.info.space, supernet.structure)
    saved.check_space(space)
    return space


@dataclass
class PolicyAnswer:
    """One answered target: the policy's candidate, the exported winner, and the run folder reporting it."""

    target: float
    counts: dict[str, int]
    winner: Winner
    report: SearchReport
    folder: Path


def answer_targets(
    supernet: Supernet,
    space: SearchSpace,
    splits: DataSplits,
    saved: SavedPolicy,
    targets: list[float],
    out: Path,
    *,
    model_name: str,
    cli: dict[str, Any] | None = None,
    dense_model: nn.Module | None = None,
    rescore_bn_batches: int = 40,
    val_batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str = "cpu",
    onnx: bool = True,
    figures: bool = True,
    progress: bool = False,
    holdout: float | Dataset[Any] | None = DEFAULT_HOLDOUT,
) -> list[PolicyAnswer]:
    """Answer each target with the saved policy, fix the winner on validation, export and report it.

    See the module's docstring for the folders. ``cli`` (the command's options) goes to each report.
    ``holdout``: the fraction of validation set aside as the search does (:meth:`DataSplits.hold_out`; the
    policy's own training search never read it), or the part already set aside: the answer is exported only
    if it scores above the uniform candidate there.

    Raises:
        AutoPruneError: another space, a target outside the trained range.
    """
    for t in targets:
        saved.check_target(t)
    splits, held = set_aside(splits, holdout)
    answers = []
    for t in targets:
        folder = out if len(targets) == 1 else out / f"target-{t:g}"
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        space_t = dataclasses.replace(space, target=t)
        counts = saved.answer(space_t, t)
        winner, trial, scorer = _rescore(supernet, space_t, splits, counts, t, rescore_bn_batches=rescore_bn_batches,
                                         val_batch_size=val_batch_size, seed=seed, device=device, holdout=held)
        log = TrialLog(folder)
        log.reset()
        log.append(trial)
        uniform = winner.choice.uniform.score
        outcome = SupernetSearch(
            result=SearchResult(searcher=saved.info.searcher, trials=[trial], best=trial, pareto=[trial],
                                wall_time_s=time.perf_counter() - started, resumed_trials=0, evaluations=0),
            best_counts=winner.counts, model=winner.extract(supernet).to(device),
            reference={"uniform": {"val_accuracy": uniform.accuracy, "macs_ratio": uniform.macs_ratio,
                                   "counts": uniform.counts}},
            evaluator=scorer.stats.to_dict(), searcher_state={"policy": str(saved.path), **saved.info.to_dict()},
            choice=winner.choice,
        )  # fmt: skip
        run_report = RunReport("search", model_name, splits.name, seed, folder, cli=dict(cli or {}))
        run_report.started = started
        run_report.set(policy={**_describe(saved, str(saved.path)), "target": t, "answer": counts,
                               "exported": winner.choice.winner.source})
        settings = {"searcher": saved.info.searcher, "trials": 1, "rungs": 1, "options": {}, "workers": 1,
                    "bn_batches": len(winner.calibration), "val_batch_size": val_batch_size, "top_k": 1,
                    "rescore_bn_batches": len(winner.calibration), "latency_form": "eager",
                    "supernet": saved.info.supernet, "device": str(device), "checkpoint": None,
                    "policy": str(saved.path), "target": t,
                    "holdout": holdout if isinstance(holdout, (int, float)) else None,
                    "holdout_samples": 0 if held is None else len(held)}  # type: ignore[arg-type]
        request = ReportRequest(dense_model=dense_model, onnx=onnx, figures=figures, run_report=run_report)
        report = write_search_report(supernet, space_t, splits, outcome, winner, [trial], folder, request,
                                     config=settings, seed=seed, device=device, progress=progress)
        answers.append(PolicyAnswer(t, counts, winner, report, folder))
    if len(targets) > 1:
        rows = [{"target": a.target, "folder": a.folder.name, "answer": a.counts,
                 "exported": a.winner.choice.winner.source, "counts": a.winner.counts,
                 "val_accuracy": a.winner.choice.winner.score.accuracy, "accuracy": a.report.pruned.get("accuracy"),
                 "macs_ratio": a.report.pruned["macs"] / a.report.dense["macs"]} for a in answers]  # fmt: skip
        write_json_atomic(out / "answers.json", {"policy": str(saved.path), "metric": saved.info.metric,
                                                 "answers": rows})
    return answers


def _rescore(supernet: Supernet, space: SearchSpace, splits: DataSplits, counts: dict[str, int], target: float, *,
             rescore_bn_batches: int, val_batch_size: int, seed: int, device: torch.device | str,
             holdout: Dataset[Any] | None = None) -> tuple[Winner, Trial, SupernetEvaluator]:  # fmt: skip
    """The answer and the uniform candidate re-scored as :func:`~autoprune.pipelines.search.pick_winner` does.

    The answer is scored once: that score is its trial's result and its re-score (the policy has no cheaper
    search score of its own).
    """
    calibration = rescore_calibration(splits, rescore_bn_batches, seed)
    scorer = SupernetEvaluator(supernet, splits.val_loader(val_batch_size), calibration,
                               bn_batches=len(calibration), device=device)
    scores: dict[tuple[tuple[str, int], ...], FullScore] = {}

    def score(candidate: dict[str, int] | Any) -> FullScore:
        key = tuple(sorted((k, int(v)) for k, v in candidate.items() if k in space.names))
        if key not in scores:
            scores[key] = scorer.score(candidate)
        return scores[key]

    start = time.perf_counter()
    s = score(counts)
    macs = supernet.structure.predict_macs(s.counts)
    result = EvalResult(counts=s.counts, accuracy=s.accuracy, loss=s.loss, macs=macs, macs_ratio=s.macs_ratio,
                        params=s.params, latency_ms=None, fidelity=scorer.max_fidelity, samples=s.samples,
                        seconds=time.perf_counter() - start, cached=False)
    trial = Trial(0, dict(counts), "complete", result, result.seconds, space.feasible(counts),
                  info={"target": target, "policy": True})
    choice = choose_winner([trial], space.uniform(1.0), score, top_k=1)
    if holdout is not None:
        choice = judge_on_holdout(choice, holdout_scorer(supernet, holdout, calibration, val_batch_size=val_batch_size,
                                                         device=device))  # fmt: skip
    return Winner(choice, calibration), trial, scorer


def _range(saved: SavedPolicy) -> str:
    low, high = saved.info.target_range
    return f"{low:g}:{high:g}"


def _describe(saved: SavedPolicy, file: str) -> dict[str, Any]:
    info = saved.info
    return {"file": file, "searcher": info.searcher, "metric": info.metric, "target_range": list(info.target_range),
            "fingerprint": info.fingerprint, "episodes": info.episodes, "model": info.model}
