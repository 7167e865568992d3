"""Do searched per-layer ratios beat pruning every layer alike? (issue 16, the harder comparison)

Runs the product's own commands, stage by stage, on one model, and writes what they measured:

1. ``autoprune train`` a dense model (train-time augmentation, SGD, cosine) and a convergence check:
   the same model trained ``--check-epochs`` more epochs at a small learning rate; converged when that
   adds less than 0.1 point of validation accuracy (the test accuracy is reported beside it).
2. ``autoprune supernet`` from the dense model (sandwich rule), once for every budget.
3. For every budget and search seed, ``autoprune search`` with the default searcher, as a user runs it:
   its returned winner (no finetuning, fixed on validation) and the uniform candidate of the same
   supernet, both scored on test by the command itself.
4. The standard pipeline at the same budgets: uniform and global L1 + finetune for as many epochs as
   the supernet trained (``--finetune-epochs``, default the supernet's epochs).

Each stage is a run folder under ``--work``; a finished stage (``report.json`` present) is read, not
rerun, so the script resumes where it stopped. Results are rewritten after every stage into
``--out/layer_ratios_<name>.json`` / ``.md``.

Example (ResNet-56 and VGG-small on Fashion-MNIST, see benchmarks/results/README.md)::

    nohup .venv/bin/python benchmarks/layer_ratios.py --model vgg_small --work /work/bench16/vgg_small \\
        --targets 0.3 0.2 --seeds 0 1 2 &
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stages import mean_se as _mean_se  # noqa: E402
from _stages import run_stage  # noqa: E402
from _supernet_options import add_stage_options  # noqa: E402

from autoprune.defaults import DEFAULT_HOLDOUT  # noqa: E402


def _acc(block: dict[str, Any]) -> str:
    return f"{block['accuracy']:.4f} ± {block['accuracy_se']:.4f}"


def _pts(mean: float, se: float) -> str:
    return f"{100 * mean:+.2f} ± {100 * se:.2f}" if not math.isnan(se) else f"{100 * mean:+.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_stage_options(p, name_help="the model")
    p.add_argument("--train-epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--check-epochs", type=int, default=5)
    p.add_argument("--check-lr", type=float, default=0.005)
    p.add_argument("--max-checks", type=int, default=3,
                   help="convergence checks before giving up (each failed one extends the dense training)")
    p.add_argument("--supernet-epochs", type=int, default=6)
    p.add_argument("--supernet-args", default="",
                   help="more `autoprune supernet` options, one quoted string (e.g. \"--teacher dense --lr 0.005\")")
    p.add_argument("--supernet-stage", default="supernet",
                   help="the supernet the searches run over: 'supernet' (trained here from the dense model) or "
                        "another finished stage in WORK that continued it (`autoprune supernet --init-supernet "
                        "WORK/supernet/supernet.pt ...`, e.g. specialised to a budget with --sample-near; its epochs "
                        "add to the supernet's) or was trained from the same dense model (e.g. more epochs); searches "
                        "over another stage are named STAGE-search-...")
    p.add_argument("--finetune-epochs", type=int, default=None,
                   help="baselines' finetuning (default: --supernet-epochs, also with another --supernet-stage)")
    p.add_argument("--targets", type=float, nargs="+", default=[0.3, 0.2])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT,
                   help="`autoprune search --holdout` (default: the command's default). Stages are named by it: "
                        "search-<target>-s<seed> without a hold-out (0), search-h<fraction>-<target>-s<seed> with one")
    p.add_argument("--only-finished", action="store_true",
                   help="start no stage: report the finished ones and list the rest as missing (results mid-way)")
    a = p.parse_args()
    if a.quick:
        a.dataset, a.train_epochs, a.check_epochs, a.supernet_epochs, a.trials = "digits", 2, 1, 1, 4
        a.max_checks = min(a.max_checks, 2)
        a.targets, a.seeds = a.targets[:1], a.seeds[:2]
    ft_epochs = a.supernet_epochs if a.finetune_epochs is None else a.finetune_epochs
    a.work.mkdir(parents=True, exist_ok=True)
    name = a.name or (a.model if a.supernet_stage == "supernet" else f"{a.model}_{a.supernet_stage}")
    data = ["--model", a.model, "--dataset", a.dataset, "--threads", str(a.threads)]
    if a.dataset != "digits":
        data += ["--data-dir", str(a.data_dir)]
    space = ["--space", a.space] if a.space else []
    trains = ["--precision", a.precision] if a.precision != "fp32" else []  # the stages that train
    # the command that produces this result: --only-finished only re-reads the stages, so it is left out
    command = shlex.join(["python", "benchmarks/layer_ratios.py", *(x for x in sys.argv[1:] if x != "--only-finished")])
    result: dict[str, Any] = {"settings": {**vars(a), "finetune_epochs": ft_epochs}, "command": command,
                              "machine": platform.platform(), "cpus": os.cpu_count()}
    for k in ("data_dir", "work", "out"):
        result["settings"][k] = str(result["settings"][k])

    def save() -> None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / f"layer_ratios_{name}.json").write_text(json.dumps(result, indent=1))
        (a.out / f"layer_ratios_{name}.md").write_text(render(result))

    missing: list[str] = []
    result["missing"] = missing

    def _run(work: Path, stage: str, argv: list[str]) -> dict[str, Any] | None:
        if a.only_finished and not (work / stage / "report.json").exists():
            missing.append(stage)
            return None
        return run_stage(work, stage, argv)

    def _needed(work: Path, stage: str, argv: list[str]) -> dict[str, Any]:
        rep = _run(work, stage, argv)
        if rep is None:
            raise SystemExit(f"--only-finished: stage {stage} has not finished in {work}; run without it first")
        return rep

    dense = _needed(a.work, "dense",
                    ["train", *data, *trains, "--train-epochs", str(a.train_epochs), "--lr", str(a.lr)])
    base, base_name, epochs = dense, "dense", a.train_epochs
    val_history = list(dense["training"]["history"]["val_accuracy"])
    result["convergence"] = []
    for k in range(1, a.max_checks + 1):
        # Converged when --check-epochs more epochs at a small learning rate add < 0.1 validation point;
        # otherwise the longer-trained model becomes the base and is checked in turn.
        name_k = "dense-check" if k == 1 else f"dense-check{k}"
        check = _needed(a.work, name_k, ["train", *data, *trains, "--checkpoint", str(a.work / base_name / "model.pt"),
                                      "--train-epochs", str(a.check_epochs), "--lr", str(a.check_lr)])
        gain = check["training"]["history"]["val_accuracy"][-1] - base["training"]["history"]["val_accuracy"][-1]
        result["convergence"].append({
            "base": base_name, "base_epochs": epochs, "extra_epochs": a.check_epochs, "lr": a.check_lr,
            "val_gain": gain, "test_before": base["dense"]["accuracy"], "test_after": check["dense"]["accuracy"],
            "test_after_se": check["dense"]["accuracy_se"], "converged": gain < 0.001})
        if gain < 0.001:
            break
        if k < a.max_checks:
            base, base_name, epochs = check, name_k, epochs + a.check_epochs
            val_history += check["training"]["history"]["val_accuracy"]
    ckpt = str(a.work / base_name / "model.pt")
    (a.work / "base.json").write_text(json.dumps({"checkpoint": ckpt, "epochs": epochs}))  # for supernet_fidelity.py
    result["dense"] = {**base["dense"], "epochs": epochs, "stage": base_name,
                       "val_history": val_history,
                       "seconds": dense["wall_time_s"], "precision": _precision(dense)}
    save()
    sn = _needed(a.work, "supernet", ["supernet", *data, *space, *trains, "--checkpoint", ckpt,
                                    "--supernet-epochs", str(a.supernet_epochs), *shlex.split(a.supernet_args)])
    result["supernet"] = {"epochs": a.supernet_epochs, **_training_seconds(sn), "args": a.supernet_args,
                          "passes_per_step": 2 + int(sn.get("config", {}).get("supernet", {}).get("num_random", 2)),
                          "precision": _precision(sn)}
    prefix = ""
    if a.supernet_stage != "supernet":
        own = _sibling(a.work, a.supernet_stage, ckpt)
        if own is not None:  # another supernet trained from the same dense model (e.g. more epochs)
            result["supernet"] = own
        else:
            result["supernet"]["continued"] = _continued(a.work, a.supernet_stage)
        prefix = f"{a.supernet_stage}-"
    save()
    supernet = str(a.work / a.supernet_stage / "supernet.pt")
    result["targets"] = {}
    for target in a.targets:
        row: dict[str, Any] = {"searches": {}, "baselines": {}}
        result["targets"][str(target)] = row
        for seed in a.seeds:
            stage = prefix + (f"search-{target}-s{seed}" if a.holdout == 0 else
                              f"search-h{a.holdout:g}-{target}-s{seed}")
            holdout = [] if a.holdout == DEFAULT_HOLDOUT else ["--holdout", str(a.holdout)]
            rep = _run(a.work, stage, ["search", *data, *space, "--checkpoint", ckpt, "--supernet", supernet,
                                       "--target-macs", str(target), "--trials", str(a.trials), "--seed", str(seed),
                                       *holdout])  # fmt: skip
            if rep is None:
                continue
            row["searches"][str(seed)] = {
                "searcher": rep["search"]["searcher"], "winner": rep["pruned"], "uniform": rep["uniform"],
                "winner_minus_uniform_test": rep["pruned"]["accuracy"] - rep["uniform"]["accuracy"],
                "vs_uniform_val": rep["vs_uniform"], "holdout": rep.get("holdout"),
                # the uniform candidate may also be a trial of the search (TPE tries it first): judge by counts
                "exported": "uniform" if rep["counts"] == rep["uniform_rescored"]["counts"] else "search",
                "macs_ratio": rep["macs_ratio"], "vs_uniform_test": _paired_test(a.work / stage, rep),
                "keep_ratios": rep["keep_ratios"], "seconds": rep["wall_time_s"],
                "evaluations": rep["search"]["evaluations"]}
            summarize(row)
            save()
        for scope in ("local", "global"):
            rep = _run(a.work, f"l1-{scope}-{target}",
                       ["prune", *data, *trains, "--checkpoint", ckpt, "--target-macs", str(target),
                        "--criterion", "l1", "--scope", scope, "--finetune-epochs", str(ft_epochs)])
            if rep is None:
                continue
            row["baselines"][f"{'uniform' if scope == 'local' else 'global'}-l1+ft"] = {
                **rep["pruned"], "macs_ratio": rep["macs_ratio"], "finetune_epochs": ft_epochs,
                "seconds": rep["wall_time_s"], "precision": _precision(rep)}
            summarize(row)
            save()
    save()
    print(render(result))


def _sibling(work: Path, stage: str, checkpoint: str) -> dict[str, Any] | None:
    """``stage`` described as ``result["supernet"]`` when it is a finished supernet trained from ``checkpoint``
    (the dense model every row prunes) rather than continued from WORK/supernet; None otherwise."""
    path = work / stage / "report.json"
    rep = json.loads(path.read_text()) if path.exists() else None
    cli = {} if rep is None else rep.get("config", {}).get("cli", {})
    if rep is None or cli.get("init_supernet") or not cli.get("checkpoint"):
        return None
    if (ROOT / cli["checkpoint"]).resolve() != (ROOT / checkpoint).resolve():
        raise SystemExit(f"--supernet-stage: {path} was trained from {cli['checkpoint']}, not from the dense model "
                         f"every row prunes ({checkpoint}); train it from that one")
    cfg = rep["config"]["supernet"]
    return {"stage": stage, "epochs": cfg["epochs"], **_training_seconds(rep), "lr": cfg["lr"],
            "args": "", "passes_per_step": 2 + int(cfg["num_random"]), "precision": _precision(rep)}


def _continued(work: Path, stage: str) -> list[dict[str, Any]]:
    """The chain of `autoprune supernet --init-supernet` stages from WORK/supernet to ``stage``, oldest first."""
    chain: list[dict[str, Any]] = []
    while stage != "supernet":
        path = work / stage / "report.json"
        more = json.loads(path.read_text()) if path.exists() else None
        init = None if more is None else more.get("config", {}).get("cli", {}).get("init_supernet")
        if more is None or init is None or len(chain) > 20:
            raise SystemExit(f"--supernet-stage: {work / stage} holds no finished `autoprune supernet --init-supernet` "
                             "run continuing WORK/supernet; train it first (see benchmarks/results/README.md)")
        cfg = more["config"]["supernet"]
        chain.insert(0, {"stage": stage, "epochs": cfg["epochs"], "lr": cfg["lr"], **_training_seconds(more),
                         "sample_near": more["config"].get("sample_near"),
                         "passes_per_step": 2 + int(cfg["num_random"]), "precision": _precision(more)})
        parent = (ROOT / init).parent  # the stages' commands run in the repository root
        stage = parent.name
        if parent.resolve() != (work / stage).resolve():
            raise SystemExit(f"--supernet-stage: {path} continues {init}, which is not a stage of {work}")
    return chain


def _training_seconds(report: dict[str, Any]) -> dict[str, Any]:
    """A supernet run's training time: the sum of its epochs' times where every epoch recorded one (also
    across resumed runs), else the wall time of the run that finished it (``seconds_partial``: earlier runs
    of a resumed training are not in it)."""
    history = report.get("history", {})
    epochs = history.get("epoch_seconds", [])
    if epochs and len(epochs) == len(history.get("largest_loss", [])):
        return {"seconds": float(sum(epochs)), "seconds_partial": False}
    return {"seconds": report["wall_time_s"], "seconds_partial": True}


def _seconds(stage: dict[str, Any]) -> str:
    partial = ", the wall time of the run that finished it" if stage.get("seconds_partial") else ""
    return f"{stage['seconds']:.0f} s{partial}"


def _precision(report: dict[str, Any]) -> str:
    """The training precision a stage ran with (its command line's ``--precision``; fp32 before it existed)."""
    return str(report.get("config", {}).get("cli", {}).get("precision", "fp32"))


def _paired_test(folder: Path, report: dict[str, Any]) -> dict[str, Any] | None:
    """Returned − uniform on test, paired per sample: the report's, else ``benchmarks/paired_test.py``'s file."""
    if report.get("vs_uniform_test") is not None:
        return dict(report["vs_uniform_test"], exact=True)
    side = folder / "vs_uniform_test.json"
    return json.loads(side.read_text()) if side.is_file() else None


def _test_difference(run: dict[str, Any]) -> str:
    """The table's returned − uniform on test, with its paired SE where measured (* : SE from a twin)."""
    paired = run.get("vs_uniform_test")
    text = f"{100 * run['winner_minus_uniform_test']:+.2f}"
    if paired is None:
        return text
    return f"{text} ± {100 * paired['se']:.2f}" + ("" if paired.get("exact", True) else "*")


def _verdict(run: dict[str, Any]) -> str:
    """The search's own verdict: on the hold-out when it had one (kept or not), else on its validation."""
    h, v = run.get("holdout"), run["vs_uniform_val"]
    if h is None:
        return f"{100 * v['difference']:+.2f} ± {100 * v['se']:.2f}" + (
            "" if run.get("exported", "search") == "search" else " (uniform won the re-scoring)")
    outcome = "kept" if h["kept"] else "uniform exported"
    return (f"hold-out {100 * h['difference']:+.2f} ± {100 * h['se']:.2f}, {outcome} (chosen on "
            f"{100 * h['selection_difference']:+.2f} ± {100 * h['selection_se']:.2f})")


def summarize(row: dict[str, Any]) -> None:
    """Mean ± standard error over search seeds of winner − uniform (test and validation)."""
    runs = list(row["searches"].values())
    test = [r["winner_minus_uniform_test"] for r in runs]
    val = [r["vs_uniform_val"]["difference"] for r in runs]
    row["winner_minus_uniform_test"] = _mean_se(test)
    row["winner_minus_uniform_val"] = _mean_se(val)
    row["winner_test"] = _mean_se([r["winner"]["accuracy"] for r in runs])
    for key, base in row["baselines"].items():
        row[f"winner_minus_{key}"] = _mean_se([r["winner"]["accuracy"] - base["accuracy"] for r in runs])


def render(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [f"# Searched layer ratios vs uniform pruning: {s['model']} on {s['dataset']}", ""]
    if "dense" in r:
        d = r["dense"]
        lines.append(f"Dense: {_acc(d)} test after {d['epochs']} epochs (SGD, cosine, lr {s['lr']}, train-time "
                     f"augmentation), {d['macs'] / 1e6:.1f} M MACs, {d['params'] / 1e3:.0f}k params; validation "
                     f"accuracy over the last epochs: {', '.join(f'{v:.4f}' for v in d['val_history'][-5:])}.")
    for c in r.get("convergence", []):
        verdict = "converged" if c["converged"] else "NOT converged"
        lines.append(f"Convergence check of the {c['base_epochs']}-epoch model: {c['extra_epochs']} more epochs "
                     f"(lr {c['lr']}, cosine) change validation accuracy by {100 * c['val_gain']:+.2f} points "
                     f"({verdict}: < 0.1 point); test {c['test_before']:.4f} before, {c['test_after']:.4f} ± "
                     f"{c['test_after_se']:.4f} after.")
    if "dense" in r:
        lines.append(f"Every row below prunes the {r['dense']['epochs']}-epoch dense model (stage "
                     f"`{r['dense'].get('stage', 'dense')}`). Training arithmetic: dense "
                     f"{r['dense'].get('precision', s.get('precision', 'fp32'))}, supernet "
                     f"{r.get('supernet', {}).get('precision', s.get('precision', 'fp32'))}, each baseline's in its "
                     "row (evaluation always float32).")
    if "supernet" in r:
        n = r["supernet"]
        recipe = f" with `{n['args']}`" if n.get("args") else ""
        more = ""
        for c in n.get("continued", []):
            near = (f", random sub-networks near {c['sample_near'][0]:g}-{c['sample_near'][1]:g} of the MACs"
                    if c.get("sample_near") else "")
            more += (f", then continued (stage `{c['stage']}`) for {c['epochs']} more sandwich epoch(s) × "
                     f"{c['passes_per_step']} passes, lr {c['lr']:g}{near} ({_seconds(c)}, {c['precision']})")
        stage = f" (stage `{n['stage']}`, from the dense model, lr {n['lr']:g})" if n.get("stage") else ""
        lines.append(f"Supernet{stage}: {n['epochs']} sandwich epochs × {n['passes_per_step']} sub-network passes "
                     f"per step{recipe} ({_seconds(n)}){more}, trained once for every budget. Searches: "
                     "default searcher, "
                     f"{s['trials']} trials, seeds {s['seeds']}, winner fixed on validation, "
                     f"hold-out {s.get('holdout', 0):g} of validation, **no finetuning**. "
                     f"Baselines: L1 + {s['finetune_epochs']} finetune epochs.")
    lines.append("")
    for target, row in r.get("targets", {}).items():
        if not row["searches"] and not row["baselines"]:
            continue  # nothing finished at this budget yet
        lines += [f"## {float(target):.0%} of the dense MACs", "",
                  "| model | seed | test acc ± SE | MACs ratio | extra training | returned − uniform, test (points) "
                  "| the search's verdict (validation, points) |", "|---|---|---|---|---|---|---|"]
        for seed, run in row["searches"].items():
            lines.append(f"| {run['searcher']} returned ({run.get('exported', 'search')}) | {seed} | "
                         f"{_acc(run['winner'])} | {run['macs_ratio']:.3f} | supernet | "
                         f"{_test_difference(run)} | {_verdict(run)} |")
        if row["searches"]:
            first = next(iter(row["searches"].values()))
            levels = sorted({run["uniform"]["accuracy"] for run in row["searches"].values()})
            uniform = (_acc(first["uniform"]) if len(levels) == 1 else  # BatchNorm recalibrated per seed
                       f"{levels[0]:.4f}–{levels[-1]:.4f} ± {first['uniform']['accuracy_se']:.4f} (per seed)")
            lines.append(f"| supernet uniform candidate | - | {uniform} | "
                         f"{first['uniform']['macs'] / r['dense']['macs']:.3f} | supernet | - | - |")
        for key, base in row["baselines"].items():
            lines.append(f"| {key} | - | {_acc(base)} | {base['macs_ratio']:.3f} | {base['finetune_epochs']} epochs "
                         f"({base.get('precision', s.get('precision', 'fp32'))}) | - | - |")
        lines.append("")
        if "winner_minus_uniform_test" in row:
            m, se = row["winner_minus_uniform_test"]
            mv, sev = row["winner_minus_uniform_val"]
            kept = [r for r in row["searches"].values() if r.get("holdout")]
            lines.append(f"- Returned model − uniform candidate (same supernet), mean ± SE over {len(row['searches'])} "
                         f"seeds: **{_pts(m, se)} points on test**, {_pts(mv, sev)} on validation (" +
                         ("the hold-out's difference for the exported model" if kept else "the samples the winner "
                          "was chosen on") + "). The SE is seed to seed: every seed is read on the same test set "
                         "against the same uniform structure (its BatchNorm statistics re-estimated per seed).")
            if any(run.get("vs_uniform_test") for run in row["searches"].values()):
                lines.append("- Each seed's ± on test is the paired SE of that difference over the test samples "
                             "(`vs_uniform_test` in the search's report, or `benchmarks/paired_test.py` for older "
                             "runs; * : the uniform candidate rebuilt with another augmentation draw of its "
                             "calibration batches, so that SE is a twin's).")
            if kept:
                held = [r["holdout"]["difference"] for r in kept]
                hm, hse = _mean_se(held)
                lines.append(f"- The hold-out kept the searched winner for {sum(r['holdout']['kept'] for r in kept)} "
                             f"of {len(kept)} seeds; searched winner − uniform on the hold-out {_pts(hm, hse)} "
                             "(unbiased), on the samples it was chosen on "
                             f"{_pts(*_mean_se([r['holdout']['selection_difference'] for r in kept]))}.")
            for key in row["baselines"]:
                mb, seb = row[f"winner_minus_{key}"]
                lines.append(f"- Returned − {key}: {_pts(mb, seb)} points on test (SE over seeds; each accuracy "
                             "also has its own test-set SE above).")
            lines.append("")
    if r.get("missing"):
        lines += [f"Not finished yet (resume without `--only-finished`): {', '.join(r['missing'])}.", ""]
    lines += [f"Command: `{r['command']}`; {r['machine']}, {r['cpus']} CPUs."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
