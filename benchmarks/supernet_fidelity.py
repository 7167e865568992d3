"""Does the supernet rank candidate structures the way their real accuracy would? (issue 16)

Takes N candidates at one budget (the uniform one, random ones and deliberately poor ones that starve
the first or the last groups; ``--candidates``), plus the winners of the earlier searches at that
budget, and for each measures:

- **supernet score**: the candidate extracted from the supernet with its shared weights, adaptive BN,
  validation accuracy (what the search ranks by; no finetuning);
- **cut score**: the same structure cut from the dense model (same channel ranking), adaptive BN,
  validation accuracy (the sub-model sampling pipeline's signal);
- **ground truth**: the structure cut from the dense model and finetuned ``--finetune-epochs`` epochs
  (the same for every candidate), test accuracy. It is measured here only, never used to choose.

Reports Kendall's tau and Spearman's rho of each score against the ground truth, with a bootstrap
95% interval over candidates. Goal (issue 16): tau >= 0.6 for the supernet score.

Every finished candidate is appended to ``--work/fidelity-<target>.jsonl``, so a stopped run resumes.

Example, after ``benchmarks/layer_ratios.py`` produced the dense model, the supernet and the searches::

    .venv/bin/python benchmarks/supernet_fidelity.py --model vgg_small --work /work/bench16/vgg_small \\
        --target 0.3 --candidates 17 --finetune-epochs 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fidelity_report import gains_over_uniform, rank_stats, render, rerender, spreads  # noqa: E402
from _short_finetune import ShortFinetuneScorer  # noqa: E402
from _supernet_options import add_stage_options  # noqa: E402


def candidates(space: Any, work: Path, target: float, n: int, seed: int) -> dict[str, dict[str, int]]:
    """Named candidates at ``space``'s budget: uniform, starved ones and random ones (``n`` in all), plus the
    winners of the searches found in ``work`` (``search-TARGET-sS``, and ``search-hH-TARGET-sS`` with a hold-out:
    the candidate the hold-out judged, whether or not it was exported) whenever they exist.

    The random candidates do not depend on how many winners exist, so a run started before the searches
    finished keeps its finished candidates and only adds the winners when it is run again.
    """
    out: dict[str, dict[str, int]] = {"uniform": space.uniform(1.0)}
    names = space.names
    quarter = max(1, len(names) // 4)
    for label, starved in (("starve-first", names[:quarter]), ("starve-last", names[-quarter:]),
                           ("starve-first-half", names[: len(names) // 2])):
        counts = space.project({g: (0.0 if g in starved else 1.0) for g in names})
        if counts not in out.values():  # the projection may fill a starved group back up to uniform
            out[label] = counts
    rng = np.random.default_rng(seed)
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        counts = space.sample(rng)
        if counts not in out.values():
            out[f"random-{len(out)}"] = counts
    for pattern in (f"search-{target}-s*", f"search-h*-{target}-s*"):  # without and with a hold-out
        for report in sorted(work.glob(f"{pattern}/report.json")):
            stage, rep = report.parent.name, json.loads(report.read_text())
            held = stage.split("-")[1] + "-" if stage.startswith("search-h") else ""
            # the search's choice: the candidate its hold-out judged (exported or not), else the exported one
            chosen = rep["holdout"]["candidate_counts"] if rep.get("holdout") else rep["counts"]
            out[f"winner-{held}{stage.rsplit('-', 1)[1]}"] = dict(chosen)
    return out


def evaluation_order(pool: dict[str, dict[str, int]]) -> list[tuple[int, str]]:
    """``(pool index, name)`` in the order candidates are finetuned: the uniform one, the searches' winners,
    the starved ones, then the random ones, so a run stopped part-way has the comparisons that matter most.
    Each candidate keeps its pool index (its finetuning seed), so the order changes no result."""
    rank = {"uniform": 0, "winner": 1, "starve": 2}
    named = list(enumerate(pool))
    return sorted(named, key=lambda t: rank.get(t[1].split("-", 1)[0], 3))


def extra_scores(scorer: Any, pool: dict[str, dict[str, int]], log: Path) -> dict[str, float]:
    """``scorer``'s validation score of every candidate in ``pool``, logged to ``log`` (resumed from it)."""
    scores = {r["name"]: r["val"] for r in map(json.loads, log.read_text().splitlines())} if log.exists() else {}
    for name, counts in pool.items():
        if name not in scores:
            scores[name] = scorer.score(counts).accuracy
            with log.open("a") as fh:
                fh.write(json.dumps({"name": name, "val": scores[name]}) + "\n")
    return scores


def _where_count(spec: str, names: tuple[str, str], form: str, example: str) -> tuple[str, int]:
    """``WHERE:COUNT`` with WHERE one of ``names`` and COUNT >= 1 (checked at parsing, before anything is loaded)."""
    where, _, count = spec.partition(":")
    if where not in names or not count.isdigit() or int(count) < 1:
        what, number = form.split(":")
        raise argparse.ArgumentTypeError(f"{spec!r}: give {form} with {what} {names[0]} or {names[1]} and {number} "
                                         f">= 1 (e.g. {example})")
    return where, int(count)


def calibration_spec(spec: str) -> tuple[str, int]:
    """``SPLIT:BATCHES`` of ``--also-calibration``."""
    return _where_count(spec, ("train", "val"), "SPLIT:BATCHES", "train:40, the search's re-scoring")


def finetune_spec(spec: str) -> tuple[str, int]:
    """``SOURCE:STEPS`` of ``--also-finetune``."""
    return _where_count(spec, ("supernet", "cut"), "SOURCE:STEPS",
                        "supernet:200, the shared weights finetuned 200 steps")


def _key(counts: dict[str, int]) -> str:
    return json.dumps(sorted(counts.items()))


def merge_replicates(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Logged rows by structure. A structure finetuned more than once (e.g. under two names in an earlier
    pool) gets the mean of its ground truths, and keeps every reading in ``truth_test_replicates``."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault(_key(r["counts"]), []).append(r)
    merged = {}
    for key, same in by_key.items():
        row = dict(same[0])
        if len(same) > 1:
            row["truth_test_replicates"] = [r["truth_test"] for r in same]
            row["truth_test"] = float(np.mean(row["truth_test_replicates"]))
            row["truth_val"] = float(np.mean([r["truth_val"] for r in same]))
        merged[key] = row
    return merged


def distinct_rows(pool: dict[str, dict[str, int]], done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per distinct structure, in pool order: a structure found under several names (e.g. the same
    winner from a search with and without a hold-out) keeps its first name and lists the others in
    ``same_as``, so that it counts once in the rank statistics."""
    rows: dict[str, dict[str, Any]] = {}
    for name, counts in pool.items():
        if name not in done:
            continue
        key = _key(counts)
        if key in rows:
            rows[key].setdefault("same_as", []).append(name)
        else:
            rows[key] = {**done[name], "name": name}
    return list(rows.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_stage_options(p, name_help="fidelity_<model>_<target>")
    p.add_argument("--supernet", type=Path, help="default: WORK/supernet/supernet.pt")
    p.add_argument("--target", type=float, default=0.3)
    p.add_argument("--candidates", type=int, default=20)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--bn-batches", type=int, default=40, help="adaptive-BN batches of 64 (the search's re-scoring)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--also", nargs="*", default=[], metavar="NAME=PATH",
                   help="more supernets (e.g. trained with --sample-near) scored on the same candidates and ranked "
                        "against the same ground truth; their scores go to WORK/fidelity-TARGET-NAME.jsonl")
    p.add_argument("--also-calibration", nargs="*", default=[], metavar="SPLIT:BATCHES", type=calibration_spec,
                   help="the supernet scored again with adaptive BN on BATCHES batches of 64 from SPLIT (train: "
                        "the search's re-scoring draws its calibration there; val: as the main score), named "
                        "calib-SPLIT-BATCHES; e.g. train:40 train:160 measures a larger calibration")
    p.add_argument("--also-finetune", nargs="*", default=[], metavar="SOURCE:STEPS", type=finetune_spec,
                   help="each candidate taken from SOURCE (supernet: its shared weights; cut: cut from the dense "
                        "model), finetuned STEPS steps on the same training batches for every candidate, then scored "
                        "on validation, named ft-SOURCE-STEPS: does a short finetune rank better than no finetune?")
    p.add_argument("--also-finetune-lr", type=float, default=0.01, help="peak lr of --also-finetune's cosine schedule")
    p.add_argument("--replicates", type=int, default=1,
                   help="finetune the uniform structure and the searches' candidates this many times in all (other "
                        "seeds, after every candidate has been finetuned once); their ground truth is the mean")
    p.add_argument("--rerender", action="store_true",
                   help="rewrite OUT/NAME.md (and the JSON's derived lines) from OUT/NAME.json without loading or "
                        "training anything: for a finished result after the report gained a line")
    a = p.parse_args()
    if a.replicates < 1:
        p.error(f"--replicates {a.replicates}: give 1 (each candidate finetuned once) or more")
    if a.rerender:
        rerender(a.out / f"{a.name or f'fidelity_{a.model}_{a.target}'}.json")
        return
    if a.quick:
        a.dataset, a.candidates, a.finetune_epochs, a.bn_batches = "digits", 6, 1, 4
    torch.set_num_threads(a.threads)

    from autoprune.data import load_dataset
    from autoprune.engine.structure import ModelStructure
    from autoprune.evaluate import SupernetEvaluator
    from autoprune.metrics import evaluate_accuracy
    from autoprune.models import build_model, load_checkpoint_into
    from autoprune.pipelines.oneshot import resolve_space
    from autoprune.pipelines.search import rescore_calibration
    from autoprune.seed import seed_everything
    from autoprune.supernet import Supernet
    from autoprune.training import TrainConfig, train

    splits = load_dataset(a.dataset, None if a.dataset == "digits" else a.data_dir)
    shape = splits.input_shape(1)

    def fresh() -> torch.nn.Module:
        return build_model(a.model, num_classes=splits.num_classes, in_channels=splits.in_channels)

    supernet, meta = Supernet.load(a.supernet or a.work / "supernet" / "supernet.pt", fresh())
    dense = fresh()
    base = a.work / "base.json"  # the converged dense model layer_ratios.py pruned from
    load_checkpoint_into(dense, json.loads(base.read_text())["checkpoint"] if base.exists()
                         else a.work / "dense" / "model.pt")
    cut = Supernet(dense, shape, criterion=supernet.criterion, scores=supernet.scores)  # same channel ranking
    space = resolve_space(ModelStructure(fresh(), shape), a.model, a.space, a.target)
    val = list(splits.val_loader())
    calib = list(splits.calibration_loader(64, a.bn_batches, seed=a.seed))
    scorers = {name: SupernetEvaluator(net, val, calib, bn_batches=a.bn_batches)
               for name, net in (("supernet", supernet), ("cut", cut))}
    pool = candidates(space, a.work, a.target, a.candidates, a.seed)
    extra: dict[str, Any] = {}  # more scores, each cheap: one validation score per candidate, no finetuning
    for spec in a.also:
        other_name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--also {spec!r}: give NAME=PATH (e.g. near=WORK/supernet-near/supernet.pt)")
        other, _ = Supernet.load(path, fresh())
        extra[other_name] = SupernetEvaluator(other, val, calib, bn_batches=a.bn_batches)
    for where, count in a.also_calibration:
        batches = (rescore_calibration(splits, count, a.seed) if where == "train"
                   else list(splits.calibration_loader(64, count, seed=a.seed)))
        extra[f"calib-{where}-{count}"] = SupernetEvaluator(supernet, val, batches, bn_batches=len(batches))
    for where, steps in a.also_finetune:
        batches = list(islice(splits.train_loader(128, seed=a.seed), steps))
        if len(batches) < steps:
            raise SystemExit(f"--also-finetune {where}:{steps}: the training split has only {len(batches)} batches "
                             "of 128; give fewer steps")
        lr_tag = "" if a.also_finetune_lr == 0.01 else f"-lr{a.also_finetune_lr:g}"  # another lr, another log
        source = supernet if where == "supernet" else cut
        extra[f"ft-{where}-{steps}{lr_tag}"] = ShortFinetuneScorer(source, batches, val, calib, lr=a.also_finetune_lr,
                                                                   seed=a.seed, precision=a.precision)
    others = {name: extra_scores(scorer, pool, a.work / f"fidelity-{a.target}-{name}.jsonl")
              for name, scorer in extra.items()}
    log_path = a.work / f"fidelity-{a.target}.jsonl"
    raw: list[dict[str, Any]] = []  # every finetune logged, same finetuning only
    if log_path.exists():
        raw = [r for r in map(json.loads, log_path.read_text().splitlines())
               if r.get("ft_epochs") == a.finetune_epochs and r.get("precision", "fp32") == a.precision]
    logged = merge_replicates(raw)  # finished candidates, matched by structure (names may shift with the pool)
    done = {name: {**logged[_key(c)], "name": name} for name, c in pool.items() if _key(c) in logged}
    stem = a.name or f"fidelity_{a.model}_{a.target}"

    def finetune(name: str, counts: dict[str, int], seed: int) -> dict[str, Any]:
        start = time.time()
        row: dict[str, Any] = {"name": name, "counts": counts, "macs_ratio": space.cost(counts),
                               "ft_epochs": a.finetune_epochs, "precision": a.precision}
        for key, scorer in scorers.items():
            row[f"{key}_val"] = scorer.score(counts).accuracy
        model = cut.extract(counts, calibration=calib, bn_batches=a.bn_batches)
        seed_everything(seed)
        train(model, splits.train_loader(128, seed=seed), TrainConfig(epochs=a.finetune_epochs,
              lr=a.finetune_lr, precision=a.precision), progress=False)
        acc = evaluate_accuracy(model, splits.test_loader())
        row.update(truth_test=acc.top1, truth_test_se=math.sqrt(acc.top1 * (1 - acc.top1) / len(splits.test)),  # type: ignore[arg-type]
                   truth_val=evaluate_accuracy(model, val).top1, seconds=time.time() - start, seed=seed)
        with log_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        raw.append(row)
        print(f"[{time.strftime('%H:%M:%S')}] {name}: supernet {row['supernet_val']:.4f} cut {row['cut_val']:.4f} "
              f"-> finetuned test {row['truth_test']:.4f} ({row['seconds']:.0f} s)", flush=True)
        return row

    for i, name in evaluation_order(pool):
        counts = pool[name]
        if name in done:
            continue
        same = next((row for row in done.values() if row["counts"] == counts), None)
        if same is not None:  # a structure already finetuned under another name is not finetuned again
            done[name] = {**same, "name": name}
            continue
        done[name] = finetune(name, counts, a.seed + i)
        write(a, stem, pool, done, meta, others)
    # Replicates: the comparison the issue rests on (uniform against the searches' candidates) finetuned again
    # with other seeds, its ground truth the mean of the finetunes (finetuning noise averaged down).
    for i, name in evaluation_order(pool):
        key = _key(pool[name])
        if name != "uniform" and not name.startswith("winner-"):
            continue
        for rep in range(sum(_key(r["counts"]) == key for r in raw), a.replicates):
            finetune(name, pool[name], a.seed + i + 1000 * rep)
            merged = merge_replicates([r for r in raw if _key(r["counts"]) == key])[key]
            done.update({n: {**merged, "name": n} for n, c in pool.items() if _key(c) == key})
            write(a, stem, pool, done, meta, others)
    write(a, stem, pool, done, meta, others)


def write(a: argparse.Namespace, stem: str, pool: dict[str, Any], done: dict[str, Any], meta: dict[str, Any],
          others: dict[str, dict[str, float]] | None = None) -> None:
    rows = distinct_rows(pool, {n: {**done[n], **{f"{o}_val": s[n] for o, s in (others or {}).items() if n in s}}
                                for n in pool if n in done})
    result: dict[str, Any] = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "command": " ".join(["python", "benchmarks/supernet_fidelity.py", *sys.argv[1:]]),
        "machine": platform.platform(), "cpus": os.cpu_count(), "supernet_epochs": meta.get("epochs"),
        "rows": rows,
    }
    if len(rows) >= 4:
        truth = [r["truth_test"] for r in rows]
        result["supernet_vs_truth"] = rank_stats([r["supernet_val"] for r in rows], truth, a.seed)
        result["cut_vs_truth"] = rank_stats([r["cut_val"] for r in rows], truth, a.seed)
        for o in others or {}:
            result[f"{o}_vs_truth"] = rank_stats([r[f"{o}_val"] for r in rows], truth, a.seed)
        result["also"] = list(others or {})
        # Noise reference: each finetuned model's own validation accuracy against its test accuracy, i.e. how
        # well the ground truth read on one finite split ranks against itself read on another.
        result["noise_reference"] = rank_stats([r["truth_val"] for r in rows], truth, a.seed)
    uniform = next((r for r in rows if r["name"] == "uniform"), None)
    if uniform is not None and len(rows) >= 2:
        # The most any searcher could gain here: the best ground truth among the candidates minus the uniform
        # one's (biased upward: it is the largest of many noisy readings, each ± its test SE).
        best = max(rows, key=lambda r: r["truth_test"])
        result["headroom"] = {"best": best["name"], "best_minus_uniform": best["truth_test"] - uniform["truth_test"],
                              "se": math.hypot(best["truth_test_se"], uniform["truth_test_se"]),
                              "range": best["truth_test"] - min(r["truth_test"] for r in rows),
                              "above_uniform": sum(r["truth_test"] > uniform["truth_test"] for r in rows)}
        result["gains_over_uniform"] = gains_over_uniform(rows)
        result["spread"] = spreads(rows, ["supernet", "cut", *(others or {})])
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (a.out / f"{stem}.md").write_text(render(result))


if __name__ == "__main__":
    main()
