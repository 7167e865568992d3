"""Every method side by side: same model, same data, same budgets; accuracy, MACs, real latency, cost.

Setting: ResNet-20 on Fashion-MNIST (``../shared/data/fashion-mnist DIR``), budgets 50% and 30% of the
dense MACs, fixed seeds. Methods, each at every budget:

- ``uniform-l1+ft`` / ``global-l1+ft``: the engine's standard pipeline (prune, finetune ``--finetune-epochs``);
- ``sampling+ft``: the sub-model sampling pipeline (adaptive-BN scores, top-k finetuned, same epochs);
- ``<searcher>``: every searcher over the shared supernet (trained once, counted once), winner exported
  **without finetuning**; ``<best searcher>+ft``: that winner finetuned with the baselines' epochs.

Columns: test accuracy, MACs ratio, params, latency at batch 1 and 64 (ratio to dense), speedup
efficiency at batch 128 (real speedup / MACs speedup; eager and deploy form), candidate evaluations,
search wall time, training epochs spent. Latency: one interleaved run per batch size over every model
(``autoprune.metrics.measure_interleaved``; at batch 128 the deploy forms join the same run): a ratio is
the median of the per-round ratios to the dense model of the same form, recorded with its IQR, and the
run's threads, batch, rounds and warm-up go to ``latency`` in the JSON. Below the table, the issue's targets are checked
from the rows. Progress goes to stderr and the finished rows to ``OUT/compare.partial.json`` after every
method, so a stopped run keeps what it measured. Results go to ``OUT/compare.json`` and
``OUT/compare.md``; ``--readme`` renders the table into README.md between ``<!-- compare:start -->`` and
``<!-- compare:end -->``.

Run (full):  .venv/bin/python benchmarks/compare.py --data-dir /tmp/autoprune-fmnist \\
                 --checkpoint DENSE.pt --supernet SUPERNET.pt --readme
Run (quick, digits, a few minutes; what the tests run):  .venv/bin/python benchmarks/compare.py --quick
Scaling (evaluation cost vs depth):  .venv/bin/python benchmarks/compare.py --scaling --trials 10 [--quick]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune.data import DataSplits, load_dataset
from autoprune.engine.deploy import optimize_for_inference
from autoprune.engine.export import load_pruned, save_weights
from autoprune.engine.latency_table import build_latency_table
from autoprune.engine.plan import PrunePlan
from autoprune.engine.pruner import PruneConfig
from autoprune.engine.structure import ModelStructure
from autoprune.evaluate import SupernetEvaluator
from autoprune.metrics import PROTOCOL, LatencyStats, count_cost, evaluate_accuracy, measure_interleaved, ratio
from autoprune.models import build_model, load_checkpoint_into
from autoprune.pipelines.oneshot import build_supernet, resolve_space
from autoprune.pipelines.sampling import SamplingConfig, run_sampling
from autoprune.pipelines.search import rescore_calibration, search_supernet
from autoprune.pipelines.standard import StandardConfig, run_standard
from autoprune.report import binomial_se
from autoprune.search_spaces import SearchSpace
from autoprune.search_spaces.budget import budget_use_summary
from autoprune.seed import seed_everything
from autoprune.supernet import Supernet, SupernetConfig
from autoprune.training import TrainConfig, train

SEARCHERS = ("tpe", "ddpg", "ppo", "cmaes", "nsga2", "greedy", "random")  # the first is the default searcher
MARK_START, MARK_END = "<!-- compare:start -->", "<!-- compare:end -->"
LATENCY_BATCHES = (1, 64, 128)
LATENCY_WARMUP = 3
_T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.0f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class Settings:
    dataset: str
    data_dir: Path | None
    targets: tuple[float, ...]
    searchers: tuple[str, ...]
    trials: int
    finetune_epochs: int
    train_epochs: int
    supernet_epochs: int
    samples: int
    top_k: int
    val_batches: int | None
    bn_batches: int
    latency_repeats: int
    seed: int
    latency_searcher: str | None = None  # also search with a latency budget (table at batch 128)
    checkpoint_epochs: int = 0  # epochs a loaded dense checkpoint was trained (for the epochs column)
    latency_form: str = "deploy"  # form of the latency-budget search's table (eager or deploy)
    rescore_top_k: int = 5  # best trials each search re-scores to fix its winner


def _interleaved(models: dict[str, nn.Module], shape: tuple[int, ...], batch: int,
                 rounds: int) -> dict[str, LatencyStats]:  # fmt: skip
    """Every model in one interleaved run (each once per round, the order rotated each round)."""
    return measure_interleaved(models, shape, batch_size=batch, rounds=rounds, warmup=LATENCY_WARMUP,
                               repeats=_pass_repeats(batch))  # fmt: skip


def _pass_repeats(batch: int) -> int:
    """Forward passes per model and round (a round's time is their mean): batch-1 passes are too short alone."""
    return 5 if batch == 1 else 1


def _repeats(s: Settings, batch: int) -> int:
    """Rounds of the interleaved run: fewer at batch 128, where each pass is long."""
    return max(3, s.latency_repeats if batch < 128 else s.latency_repeats // 2)


def _val(splits: DataSplits, limit: int | None) -> list[Any]:
    batches = list(splits.val_loader(256))
    return batches if limit is None else batches[:limit]


def _dense(splits: DataSplits, s: Settings, checkpoint: Path | None) -> tuple[nn.Module, int]:
    model = build_model("resnet20", num_classes=splits.num_classes, in_channels=splits.in_channels)
    if checkpoint is not None:
        load_checkpoint_into(model, checkpoint)
        return model, s.checkpoint_epochs
    train(model, splits.train_loader(128, seed=s.seed), TrainConfig(epochs=s.train_epochs), progress=False)
    return model, s.train_epochs


def _supernet(dense: nn.Module, splits: DataSplits, space: SearchSpace, s: Settings,
              path: Path | None) -> tuple[Supernet, int, float]:
    start = time.perf_counter()
    if path is not None:
        net, meta = Supernet.load(path, copy.deepcopy(dense))
        return net, int(meta.get("epochs_done", 0)), 0.0  # its epochs count; its time was spent elsewhere
    run = build_supernet(copy.deepcopy(dense), splits.input_shape(), space, splits.train_loader(128, seed=s.seed),
                         SupernetConfig(epochs=s.supernet_epochs, seed=s.seed), progress=False)
    return run.supernet, s.supernet_epochs, time.perf_counter() - start


def _calibration(splits: DataSplits, s: Settings) -> list[Any]:
    """The re-scoring calibration ``search_supernet`` uses by default (4 x bn_batches from the training split)."""
    return rescore_calibration(splits, 4 * s.bn_batches, s.seed)


def _finetune(model: nn.Module, splits: DataSplits, s: Settings) -> nn.Module:
    tuned = copy.deepcopy(model)
    train(tuned, splits.train_loader(128, seed=s.seed), TrainConfig(epochs=s.finetune_epochs, lr=0.01),
          progress=False)
    return tuned


def _model_dir(partial: Path | None) -> Path | None:
    return None if partial is None else partial.parent / f"{partial.stem.split('.')[0]}_models"


def compare(s: Settings, checkpoint: Path | None, supernet_path: Path | None,
            partial: Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Every method at every budget. With ``resume``, rows in ``partial`` are kept and their models reloaded
    (plan + safetensors in ``<name>_models/``), so a stopped run continues where it stopped."""
    seed_everything(s.seed)
    splits = load_dataset(s.dataset, s.data_dir)
    shape = splits.input_shape()
    test = splits.test_loader()
    n_test = len(splits.test)  # type: ignore[arg-type]
    log(f"dense model ({'loaded' if checkpoint else f'training {s.train_epochs} epochs'})")
    dense, dense_epochs = _dense(splits, s, checkpoint)
    base_space = resolve_space(ModelStructure(dense, shape), "resnet20", None, 0.5)
    log(f"supernet ({'loaded' if supernet_path else f'training {s.supernet_epochs} sandwich epochs'})")
    net, sn_epochs, sn_seconds = _supernet(dense, splits, base_space, s, supernet_path)
    rows: list[dict[str, Any]] = []
    models: dict[str, nn.Module] = {"dense": dense.eval()}
    model_dir = _model_dir(partial)
    done: dict[str, dict[str, Any]] = {}
    if resume and partial is not None and partial.exists():
        done = {r["key"]: r for r in json.loads(partial.read_text())["rows"] if "key" in r}
        log(f"resuming: {len(done)} finished rows in {partial}")

    def finished(key: str) -> bool:
        """A row of an earlier run of this benchmark: kept as measured, its model reloaded for the timing."""
        if key not in done or model_dir is None or key == "dense":
            return False
        base = build_model("resnet20", num_classes=splits.num_classes, in_channels=splits.in_channels)
        models[key] = load_pruned(base, model_dir / f"{key}.plan.json", model_dir / f"{key}.safetensors").eval()
        rows.append(done[key])
        log(f"{key}: kept from the earlier run (test {done[key]['accuracy']:.4f})")
        return True

    def add(name: str, target: float | None, model: nn.Module, plan: Any = None, **extra: Any) -> None:
        key = name if target is None else f"{name}@{target}"
        models[key] = model.eval()
        cost = count_cost(model, shape)
        acc = evaluate_accuracy(model, test).top1
        rows.append({"method": name, "target": target, "accuracy": acc, "accuracy_se": binomial_se(acc, n_test),
                     "macs": cost.macs, "params": cost.params, **extra, "key": key})
        log(f"{key}: test {acc:.4f}, MACs {cost.macs / rows[0]['macs']:.3f} of dense, {extra.get('search_s', 0)} s")
        if plan is not None and model_dir is not None:
            model_dir.mkdir(parents=True, exist_ok=True)
            plan.save(model_dir / f"{key}.plan.json")
            save_weights(model, model_dir / f"{key}.safetensors")
        if partial is not None:
            partial.write_text(json.dumps({"rows": rows, "command": " ".join(sys.argv)}, indent=1))

    add("dense", None, dense, evaluations=0, search_s=0.0, epochs=dense_epochs)
    table, table_s = None, 0.0
    if s.latency_searcher:
        log(f"per-layer latency table at batch 128, {s.latency_form} form (for the latency-budget search)")
        start = time.perf_counter()
        table = build_latency_table(base_space.structure, base_space.choices, batch_size=128, form=s.latency_form)
        table_s = round(time.perf_counter() - start, 1)
    for target in s.targets:
        space = SearchSpace(base_space.groups, "macs", target, base_space.round_to, base_space.structure)
        for scope in ("local", "global"):
            name = f"{'uniform' if scope == 'local' else 'global'}-l1+ft"
            if finished(f"{name}@{target}"):
                continue
            log(f"{scope} L1 + {s.finetune_epochs} finetune epochs at {target} MACs")
            start = time.perf_counter()
            res = run_standard(dense, shape, StandardConfig(
                prune=PruneConfig(target_macs=target, criterion="l1", scope=scope),
                finetune=TrainConfig(epochs=s.finetune_epochs, lr=0.01)),
                train_loader=splits.train_loader(128, seed=s.seed), val_loader=_val(splits, s.val_batches),
                calibration=splits.calibration_loader(seed=s.seed), progress=False)
            add(name, target, res.model, res.plan, evaluations=0,
                search_s=round(time.perf_counter() - start, 1), epochs=s.finetune_epochs)
        if not finished(f"sampling+ft@{target}"):
            log(f"sampling {s.samples} sub-models, top {s.top_k} finetuned, at {target} MACs")
            start = time.perf_counter()
            sres = run_sampling(dense, shape, space, train_loader=splits.train_loader(128, seed=s.seed),
                                val_batches=_val(splits, s.val_batches),
                                calibration=splits.calibration_loader(seed=s.seed),
                                config=SamplingConfig(samples=s.samples, top_k=s.top_k, bn_batches=s.bn_batches,
                                                      finetune=TrainConfig(epochs=s.finetune_epochs, lr=0.01),
                                                      seed=s.seed))
            add("sampling+ft", target, sres.model, sres.plan, evaluations=s.samples,
                search_s=round(time.perf_counter() - start, 1), epochs=s.finetune_epochs * s.top_k,
                spearman=sres.correlation.get("adaptive_bn_score_vs_finetuned"))
        default_model: nn.Module | None = None
        for name in s.searchers:
            if finished(f"{name}@{target}"):
                continue
            log(f"{name}: {s.trials} trials over the supernet at {target} MACs")
            start = time.perf_counter()
            out = search_supernet(net, space, splits, searcher=name, trials=s.trials, seed=s.seed,
                                  bn_batches=s.bn_batches, progress=False, val_batch_size=256, top_k=s.rescore_top_k)
            if out.model is None or out.choice is None or out.best_counts is None:
                rows.append({"method": name, "target": target, "failed": True})
                continue
            choice = out.choice
            evaluated = [t.counts for t in out.result.trials if t.result is not None and t.feasible]
            if f"supernet-uniform@{target}" not in models and not finished(f"supernet-uniform@{target}"):
                # the uniform candidate of the same supernet, re-scored and exported the same way: the row
                # a searcher has to beat for per-layer ratios to matter
                uniform = net.extract(choice.uniform.score.counts, calibration=list(_calibration(splits, s)),
                                      bn_batches=4 * s.bn_batches)
                add("supernet-uniform", target, uniform, net.plan(choice.uniform.score.counts), evaluations=0,
                    search_s=0.0, epochs=0, val_accuracy=choice.uniform.score.accuracy,
                    val_accuracy_se=choice.uniform.score.accuracy_se,
                    budget_used=space.budget_use({k: v for k, v in choice.uniform.score.counts.items()
                                                  if k in space.names})["used"])
            add(name, target, out.model, net.plan(out.best_counts), evaluations=out.result.evaluations,
                search_s=round(time.perf_counter() - start, 1), epochs=0,
                val_accuracy=choice.winner.score.accuracy, val_accuracy_se=choice.winner.score.accuracy_se,
                winner_source=choice.winner.source, vs_uniform_val=choice.difference,
                vs_uniform_val_se=choice.difference_se, beats_uniform=choice.beats_uniform,
                search_best_val_accuracy=None if out.best is None else out.best.accuracy,
                budget_used=space.budget_use({k: v for k, v in out.best_counts.items() if k in space.names})["used"],
                budget_use_evaluated=budget_use_summary(space, evaluated))
            if name == s.searchers[0]:
                default_model = out.model
        if table is not None and s.latency_searcher and not finished(f"{s.latency_searcher}-latency-budget@{target}"):
            # budget: the predicted batch-128 latency of the uniform network at this MACs budget, so the row
            # shows what a latency-aware search buys at the speed of uniform pruning
            lspace = dataclasses.replace(space, metric="latency", target=1.0, latency_table=table)
            lat_target = round(lspace.cost(space.uniform(1.0)), 4)
            lspace = dataclasses.replace(lspace, target=lat_target)
            log(f"{s.latency_searcher}: {s.trials} trials, latency budget {lat_target} of dense (uniform's, batch 128)")
            start = time.perf_counter()
            out = search_supernet(net, lspace, splits, searcher=s.latency_searcher, trials=s.trials, seed=s.seed,
                                  bn_batches=s.bn_batches, progress=False, val_batch_size=256, top_k=s.rescore_top_k)
            if out.model is not None and out.choice is not None and out.best_counts is not None:
                add(f"{s.latency_searcher}-latency-budget", target, out.model, net.plan(out.best_counts),
                    evaluations=out.result.evaluations, search_s=round(time.perf_counter() - start, 1), epochs=0,
                    table_s=table_s, latency_target=lat_target, latency_form=s.latency_form,
                    val_accuracy=out.choice.winner.score.accuracy, val_accuracy_se=out.choice.winner.score.accuracy_se,
                    winner_source=out.choice.winner.source, beats_uniform=out.choice.beats_uniform)
        ft_name = f"{s.searchers[0]}+ft"
        if s.finetune_epochs > 0 and s.searchers and not finished(f"{ft_name}@{target}"):
            # the default searcher's returned winner, finetuned like the baselines (no choice among searchers);
            # search_s is the finetuning time (its search is the row above)
            if default_model is None:
                base = build_model("resnet20", num_classes=splits.num_classes, in_channels=splits.in_channels)
                assert model_dir is not None
                key = f"{s.searchers[0]}@{target}"
                default_model = load_pruned(base, model_dir / f"{key}.plan.json", model_dir / f"{key}.safetensors")
            start = time.perf_counter()
            tuned = _finetune(default_model, splits, s)
            plan = PrunePlan.load(model_dir / f"{s.searchers[0]}@{target}.plan.json") if model_dir else None
            add(ft_name, target, tuned, plan, evaluations=0, search_s=round(time.perf_counter() - start, 1),
                epochs=s.finetune_epochs)
    latency: dict[str, Any] = {"protocol": PROTOCOL, "warmup": LATENCY_WARMUP, "runs": []}
    deploy = {f"deploy/{k}": optimize_for_inference(m) for k, m in models.items()}
    for batch in LATENCY_BATCHES:
        timed = {**models, **(deploy if batch == 128 else {})}  # the deploy forms join the batch-128 run
        log(f"latency of {len(timed)} models at batch {batch}, one interleaved run"
            + (" (eager and deploy form: BatchNorm folded, channels-last)" if batch == 128 else ""))
        stats = _interleaved(timed, shape, batch, _repeats(s, batch))
        dense_stats = stats["dense"]
        latency["runs"].append({"batch_size": batch, "rounds": dense_stats.rounds, "repeats": dense_stats.repeats,
                                "threads": dense_stats.threads, "models": len(timed)})
        for row in rows:
            if "key" not in row:
                continue
            forms = [("", row["key"], "dense")]
            if batch == 128:
                forms.append(("deploy_", f"deploy/{row['key']}", "deploy/dense"))
            for prefix, key, ref in forms:
                r = ratio(stats, key, ref)  # median of the per-round ratios to the dense model of the same form
                row[f"{prefix}latency_b{batch}_ms"] = round(stats[key].median_ms, 4)
                row[f"{prefix}latency_b{batch}_iqr_ms"] = round(stats[key].iqr_ms, 4)
                row[f"{prefix}latency_b{batch}_ratio"] = round(r.median, 4)
                row[f"{prefix}latency_b{batch}_ratio_iqr"] = round(r.iqr, 4)
    dense_row = rows[0]
    for row in rows:
        if "macs" in row:
            row["macs_ratio"] = round(row["macs"] / dense_row["macs"], 4)
            # real speedup as a share of the speedup the MACs promise (1.0: latency falls like MACs)
            row["speedup_efficiency_b128"] = round(row["macs_ratio"] / row["latency_b128_ratio"], 4)
            row["deploy_speedup_efficiency_b128"] = round(row["macs_ratio"] / row["deploy_latency_b128_ratio"], 4)
    return {
        "latency": latency,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(s).items()},
        "supernet": {"epochs": sn_epochs, "seconds": round(sn_seconds, 1),
                     "from": None if supernet_path is None else str(supernet_path)},
        "rows": rows, "targets": check_targets(rows, s.searchers), "command": " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__},
    }


def _pm(value: float | None, se: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}")


def _ratio(row: dict[str, Any], what: str) -> str:
    """A latency ratio with its IQR over rounds (rows of older results have no IQR)."""
    text = f"{row.get(f'{what}_ratio', float('nan')):.2f}"
    return text + (f" [{row[f'{what}_ratio_iqr']:.2f}]" if f"{what}_ratio_iqr" in row else "")


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| method | MACs target | test acc ± SE | val acc ± SE (winner fixed on it) | vs supernet-uniform, val "
        "(points ± SE) | MACs ratio | budget used (winner; evaluated median, saturated) | params "
        "| latency b1 (× dense [IQR]) | latency b64 (× dense [IQR]) | speedup efficiency b128 (eager / deploy form) "
        "| evaluations | search s | train epochs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if r.get("failed"):
            lines.append(f"| {r['method']} | {r['target']} | failed | | | | | | | | | | | |")
            continue
        vs = "-"
        if r.get("vs_uniform_val") is not None:
            vs = f"{100 * r['vs_uniform_val']:+.2f} ± {100 * r['vs_uniform_val_se']:.2f}"
            vs += " (significant)" if r.get("beats_uniform") else ""
            if r.get("winner_source") == "uniform":
                vs += " (uniform kept)"
        used = "-"
        if r.get("budget_used") is not None:
            used = f"{r['budget_used']:.3f}"
            ev = r.get("budget_use_evaluated")
            if ev and ev.get("candidates"):
                used += f"; {ev['used_median']:.3f}, {100 * ev['saturated_fraction']:.0f}%"
        lines.append(
            f"| {r['method']} | {r['target'] or '-'} | {_pm(r['accuracy'], r.get('accuracy_se'))} | "
            f"{_pm(r.get('val_accuracy'), r.get('val_accuracy_se'))} | {vs} | {r['macs_ratio']:.3f} | {used} | "
            f"{r['params'] / 1e3:.1f}k | {_ratio(r, 'latency_b1')} | "
            f"{_ratio(r, 'latency_b64')} | {r.get('speedup_efficiency_b128', float('nan')):.2f} / "
            f"{r.get('deploy_speedup_efficiency_b128', float('nan')):.2f} | "
            f"{r['evaluations']} | {r['search_s']} | {r['epochs']} |"
        )
    sn = result["supernet"]
    lines.append("")
    source = f" (loaded from {sn['from']})" if sn["from"] else f" ({sn['seconds']} s)"
    machine = result["machine"]
    lines.append(
        f"Supernet: {sn['epochs']} sandwich epochs{source}, trained once, shared by every searcher and "
        f"budget. Searchers export their winner **without finetuning**, as each returns it (top "
        f"{result['settings'].get('rescore_top_k', 5)} trials and the uniform candidate re-scored on validation); "
        f"`supernet-uniform` is the uniform candidate of the same supernet, exported the same way; "
        f"`{result['settings']['searchers'][0]}+ft` finetunes the default searcher's winner "
        f"{result['settings']['finetune_epochs']} epochs, like the baselines. Command: `{result['command']}`; "
        f"{machine['platform']}, {machine['torch_threads']} torch threads."
    )
    if "latency" in result:
        runs = "; ".join(f"batch {r['batch_size']}: {r['models']} models, {r['rounds']} rounds, {r['threads']} "
                         "threads" for r in result["latency"]["runs"])  # fmt: skip
        lines += ["", f"Latency ({runs}), ratios [IQR over rounds]: {result['latency']['protocol']}."]
    lines += ["", "Targets (checked from the rows above; the default searcher's returned winner, no selection "
              "across searchers by test accuracy):", ""]
    for target, check in result.get("targets", {}).items():
        lines.append(f"- **{target} MACs:** {check['summary']}")
    return "\n".join(lines) + "\n"


def check_targets(rows: list[dict[str, Any]], searchers: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The issue's targets per budget, computed from the measured rows (nothing here is hand-entered).

    The target compares the *default* searcher's returned winner (the first of ``searchers``); the best
    returned winner is reported only as such.
    """
    dense = next(r for r in rows if r["method"] == "dense")
    out: dict[str, dict[str, Any]] = {}
    for target in sorted({r["target"] for r in rows if r.get("target") is not None}, reverse=True):
        here = [r for r in rows if r.get("target") == target and not r.get("failed")]
        supernet = [r for r in here if r["method"] in searchers]
        default = next((r for r in supernet if r["method"] == searchers[0]), None)
        baselines = [r for r in here if r["method"] in ("uniform-l1+ft", "global-l1+ft")]
        sn_uniform = next((r for r in here if r["method"] == "supernet-uniform"), None)
        structured = [r for r in here if "speedup_efficiency_b128" in r]
        deployed = {r["method"]: r["deploy_speedup_efficiency_b128"] for r in structured
                    if "deploy_speedup_efficiency_b128" in r}
        if default is None or not baselines:
            continue
        best_returned = max(supernet, key=lambda r: r["accuracy"])
        best_base = max(baselines, key=lambda r: r["accuracy"])
        diff_base = default["accuracy"] - best_base["accuracy"]
        se_base = math.hypot(default["accuracy_se"], best_base["accuracy_se"])
        gap = dense["accuracy"] - default["accuracy"]
        slowest = max(supernet, key=lambda r: r["search_s"])
        eff = {r["method"]: r["speedup_efficiency_b128"] for r in structured}
        saturated = {r["method"]: r["budget_use_evaluated"]["saturated_fraction"] for r in supernet
                     if r.get("budget_use_evaluated", {}).get("candidates")}
        check = {
            "default_searcher": default["method"], "default_accuracy": default["accuracy"],
            "default_accuracy_se": default["accuracy_se"],
            "best_baseline": best_base["method"], "best_baseline_accuracy": best_base["accuracy"],
            "default_minus_baseline": diff_base, "default_minus_baseline_se": se_base,
            "beats_baseline": diff_base > 2 * se_base,
            "gap_to_dense_points": round(100 * gap, 2), "within_0_3_of_dense": gap <= 0.003,
            "beats_supernet_uniform_on_val": default.get("beats_uniform"),
            "supernet_uniform_accuracy": None if sn_uniform is None else sn_uniform["accuracy"],
            "best_returned_winner": best_returned["method"], "best_returned_accuracy": best_returned["accuracy"],
            "saturated_fraction": saturated,
            "speedup_efficiency_b128": eff,
            "methods_at_0_85_efficiency": sorted(m for m, e in eff.items() if e >= 0.85),
            "deploy_speedup_efficiency_b128": deployed,
            "deploy_methods_at_0_85_efficiency": sorted(m for m, e in deployed.items() if e >= 0.85),
            "slowest_search": slowest["method"], "slowest_search_s": slowest["search_s"],
            "searches_under_20_min": slowest["search_s"] < 1200,
        }
        vs_uni = (f"{100 * default['vs_uniform_val']:+.2f} ± {100 * default['vs_uniform_val_se']:.2f} points over "
                  f"the supernet's uniform candidate on validation ("
                  f"{'significant' if default.get('beats_uniform') else 'within noise'})"
                  if default.get("vs_uniform_val") is not None else "")
        verdict = ("met" if check["beats_baseline"] else "not met: significantly below"
                   if diff_base < -2 * se_base else "not shown: within 2 standard errors")
        check["summary"] = (
            f"default searcher {default['method']}'s winner {_pm(default['accuracy'], default['accuracy_se'])} test "
            f"vs best L1+finetune {best_base['method']} {_pm(best_base['accuracy'], best_base['accuracy_se'])}: "
            f"{100 * diff_base:+.2f} ± {100 * se_base:.2f} points "
            f"({verdict}); "
            f"{check['gap_to_dense_points']:.2f} points below dense "
            f"({'met' if check['within_0_3_of_dense'] else 'not met'}, goal ≤ 0.3); {vs_uni}; "
            f"best returned winner (reported only as such) {best_returned['method']} "
            f"{best_returned['accuracy']:.4f}; candidates within one rounding step of the budget: "
            + ", ".join(f"{m} {100 * f:.0f}%" for m, f in saturated.items())
            + f"; speedup efficiency at batch 128 ≥ 0.85 for {len(check['methods_at_0_85_efficiency'])} of "
            f"{len(eff)} pruned models in eager PyTorch (range {min(eff.values()):.2f}–{max(eff.values()):.2f})"
            + (f", for {len(check['deploy_methods_at_0_85_efficiency'])} of {len(deployed)} in the deploy form "
               f"(range {min(deployed.values()):.2f}–{max(deployed.values()):.2f})" if deployed else "")
            + "; slowest search "
            f"{slowest['method']} {slowest['search_s']} s ({'met' if check['searches_under_20_min'] else 'not met'}, "
            "goal < 20 min)"
        )
        out[str(target)] = check
    return out


def scaling_one(name: str, dataset: str, data_dir: Path | None, evals: int, val_batches: int,
                bn_batches: int) -> dict[str, Any]:
    """Wall time per full evaluation (adaptive BN + validation) of random sub-networks and this process's
    peak RSS, for one depth (untrained weights: cost only, not accuracy)."""
    import numpy as np

    splits = load_dataset(dataset, data_dir)
    model = build_model(name, num_classes=splits.num_classes, in_channels=splits.in_channels)
    net = Supernet(model, splits.input_shape())
    space = resolve_space(net.structure, name, None, 0.5)
    ev = SupernetEvaluator(net, _val(splits, val_batches), splits.calibration_loader(128, seed=0),
                           bn_batches=bn_batches)
    rng = np.random.default_rng(0)
    ev.evaluate(space.sample(rng))  # warm-up
    start = time.perf_counter()
    for _ in range(evals):
        ev.evaluate(space.sample(rng))
    return {"model": name, "groups": len(space.groups), "dense_macs": net.structure.dense_macs,
            "seconds_per_evaluation": round((time.perf_counter() - start) / evals, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def scaling(dataset: str, data_dir: Path | None, threads: int, evals: int = 10, val_batches: int = 10,
            bn_batches: int = 10, depths: tuple[str, ...] = ("resnet20", "resnet32", "resnet56"),
            ) -> list[dict[str, Any]]:
    """:func:`scaling_one` per depth, each in a fresh process so every peak RSS is its own."""
    import subprocess

    rows = []
    for name in depths:
        log(f"scaling: {name}")
        cmd = [sys.executable, __file__, "--scaling-one", name, "--threads", str(threads),
               "--val-batches", str(val_batches), "--bn-batches", str(bn_batches), "--trials", str(evals),
               *(["--quick"] if dataset == "digits" else ["--data-dir", str(data_dir)])]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def render_readme(readme: Path, table: str) -> None:
    text = readme.read_text()
    if MARK_START not in text or MARK_END not in text:
        raise SystemExit(f"{readme} has no {MARK_START} ... {MARK_END} block to fill")
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    readme.write_text(f"{head}{MARK_START}\n{table}{MARK_END}{tail}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="digits, tiny budgets: a few minutes (the tests run it)")
    p.add_argument("--scaling", action="store_true",
                   help="only the evaluation-cost-vs-depth table (ResNet-20/32/56; --trials evaluations each)")
    p.add_argument("--scaling-one", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/autoprune-fmnist"))
    p.add_argument("--checkpoint", type=Path, help="trained dense ResNet-20 (else trained here)")
    p.add_argument("--checkpoint-epochs", type=int, default=0,
                   help="epochs the --checkpoint was trained (reported in the epochs column)")
    p.add_argument("--supernet", type=Path, help="trained supernet of that model (else trained here)")
    p.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.3])
    p.add_argument("--searchers", nargs="+", default=list(SEARCHERS))
    p.add_argument("--latency-searcher", default="tpe",
                   help="also run this searcher with a latency budget (table at batch 128); 'none' to skip")
    p.add_argument("--latency-form", choices=("eager", "deploy"), default="deploy",
                   help="form the latency-budget search's table is measured in (default: deploy)")
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--train-epochs", type=int, default=10)
    p.add_argument("--supernet-epochs", type=int, default=3)
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--val-batches", type=int, default=None, help="limit validation batches of 256 (speed)")
    p.add_argument("--bn-batches", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--readme", action="store_true", help="render the table into README.md")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows of OUT/<name>.partial.json (models in OUT/<name>_models) and run the rest")
    p.add_argument("--rescore-top-k", type=int, default=5, help="best trials each search re-scores (its winner)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    dataset = "digits" if a.quick else "fashion-mnist"
    if a.scaling_one:
        row = scaling_one(a.scaling_one, dataset, None if a.quick else a.data_dir, a.trials, a.val_batches or 10,
                          a.bn_batches)
        print(json.dumps(row))
        return row
    if a.scaling:
        rows = scaling(dataset, a.data_dir, a.threads, evals=a.trials, val_batches=a.val_batches or 10,
                       bn_batches=a.bn_batches)
        (a.out / "scaling.json").write_text(json.dumps({"rows": rows, "command": " ".join(sys.argv)}, indent=1))
        print(json.dumps(rows, indent=1))
        return {"scaling": rows}
    latency_searcher = None if a.latency_searcher.lower() == "none" else a.latency_searcher
    if a.quick:
        s = Settings("digits", None, (0.5,), tuple(a.searchers), trials=6, finetune_epochs=1, train_epochs=3,
                     supernet_epochs=1, samples=4, top_k=1, val_batches=None, bn_batches=2, latency_repeats=3,
                     seed=a.seed, latency_searcher=latency_searcher, latency_form=a.latency_form)
    else:
        s = Settings("fashion-mnist", a.data_dir, tuple(a.targets), tuple(a.searchers), a.trials, a.finetune_epochs,
                     a.train_epochs, a.supernet_epochs, a.samples, a.top_k, a.val_batches, a.bn_batches, 20, a.seed,
                     latency_searcher, a.checkpoint_epochs, a.latency_form)
    name = "compare_quick" if a.quick else "compare"
    partial = a.out / f"{name}.partial.json"
    s = dataclasses.replace(s, rescore_top_k=a.rescore_top_k)
    if partial.exists() and not a.resume:
        raise SystemExit(f"{partial} holds rows of an unfinished run: pass --resume to continue it, or remove it")
    result = compare(s, a.checkpoint, a.supernet, partial=partial, resume=a.resume)
    (a.out / f"{name}.json").write_text(json.dumps(result, indent=1))
    partial.unlink(missing_ok=True)
    table = markdown(result)
    (a.out / f"{name}.md").write_text(f"# Every method side by side ({s.dataset})\n\n{table}")
    print(table)
    if a.readme:
        render_readme(Path(__file__).resolve().parents[1] / "README.md", table)
    return result


if __name__ == "__main__":
    main()
