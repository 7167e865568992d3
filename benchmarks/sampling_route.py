"""Layer ratios chosen by a short finetune, then finetuned: the sampling pipeline against uniform L1 + finetune.

Issue 16's fidelity benchmark found that on ResNet-56 at 20% of the MACs a structure cut from the dense model
and finetuned 200 steps ranks candidates against cut + 2 finetune epochs at Kendall tau 0.52, where the
supernet's shared weights reach 0.33 and the cut model's adaptive-BN score 0.11. This benchmark runs the product's
own `autoprune sample` that way, per seed: ``--samples N --top-k N --finetune-batches STEPS --finetune-epochs 1``
(every candidate, the uniform one included, screened by a STEPS-step finetune and scored on validation), then
``--final-epochs E`` (the chosen one finetuned E more epochs). It compares the returned model, on test, with the
uniform and global L1 + E finetune epochs baselines from the same dense model with the same seeds (seed 0's is the
one ``benchmarks/layer_ratios.py`` ran in the same work folder; others run here as ``l1-SCOPE-TARGET-sS``), and with
the uniform candidate's own screening score.

Stages ``sample-N-STEPS-TARGET-sS`` in ``--work`` (a finished one is read back; a stopped one continues: its
scored candidates, finished finetunings and final epochs are kept).

    .venv/bin/python benchmarks/sampling_route.py --model resnet56 \\
        --space benchmarks/spaces/resnet56_low_streams.yaml --work benchmarks/work/resnet56 --target 0.2 \\
        --seeds 0 1 2 --samples 16 --steps 200 --final-epochs 6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stages import mean_se, run_stage
from _supernet_options import add_stage_options


def _pts(pair: tuple[float, float]) -> str:
    mean, se = pair
    return f"{100 * mean:+.2f}" + ("" if se != se else f" ± {100 * se:.2f}")  # NaN SE with one seed


def summarize(runs: dict[str, dict[str, Any]], baselines: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean ± SE over seeds of the returned model's test accuracy, and of its difference to each baseline.

    A baseline finetuned with several seeds enters with its mean, and its own SE over seeds is added in quadrature
    (the runs and the baselines are independent draws, not pairs); with one baseline seed the SE is the runs' only.
    """
    out: dict[str, Any] = {"test": mean_se([r["accuracy"] for r in runs.values()]),
                           "screen_best_minus_uniform_val": mean_se([r["screen_best_minus_uniform_val"]
                                                                    for r in runs.values()])}
    run_mean, run_se = out["test"]
    for key, base in baselines.items():
        base_mean, base_se = mean_se([b["accuracy"] for b in base["seeds"].values()])
        se = run_se if len(base["seeds"]) < 2 else (run_se ** 2 + base_se ** 2) ** 0.5
        out[f"minus_{key}"] = (run_mean - base_mean, se)
        out[key] = (base_mean, base_se)
    return out


def render(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [f"# Sampling with a short-finetune screening vs uniform L1 + finetune: {s['model']} on {s['dataset']} "
             f"at {s['target']:.0%} of the MACs", "",
             f"Per seed: `autoprune sample` draws {s['samples']} structures (the uniform one among them), cuts each "
             f"from the converged dense model, finetunes it {s['steps']} steps and scores it on validation; the best "
             f"is finetuned {s['final_epochs']} more epochs and returned. Extra training of the returned model: "
             f"{s['steps']} steps + {s['final_epochs']} epochs; the screening costs {s['samples']} × {s['steps']} "
             f"steps (≈ {s['samples'] * s['steps'] * 128 / r['train_size']:.1f} epochs) more. Baselines: L1 + "
             f"{s['final_epochs']} finetune epochs from the same dense model with the same seeds (seed 0: "
             "`benchmarks/layer_ratios.py`'s).", "",
             "| model | seed | test acc ± SE | MACs ratio | chosen | screening: best − uniform (val, points) |",
             "|---|---|---|---|---|---|"]
    for seed, run in r["runs"].items():
        lines.append(f"| sample + final finetune | {seed} | {run['accuracy']:.4f} ± {run['accuracy_se']:.4f} | "
                     f"{run['macs_ratio']:.3f} | {'uniform' if run['chose_uniform'] else 'searched'} | "
                     f"{100 * run['screen_best_minus_uniform_val']:+.2f} |")
    for key, base in r["baselines"].items():
        for seed, b in base["seeds"].items():
            lines.append(f"| {key} | {seed} | {b['accuracy']:.4f} ± {b['accuracy_se']:.4f} | {b['macs_ratio']:.3f} | "
                         "- | - |")
    lines.append("")
    if r["runs"]:
        sm = r["summary"]
        lines.append(f"- Returned model, mean ± SE over {len(r['runs'])} seed(s): test {sm['test'][0]:.4f}"
                     + ("" if sm["test"][1] != sm["test"][1] else f" ± {sm['test'][1]:.4f}") + ".")
        for key, base in r["baselines"].items():
            n = len(base["seeds"])
            lines.append(f"- Returned − {key}: **{_pts(sm[f'minus_{key}'])} points on test** (means over seeds; "
                         + (f"SE over seeds of both, in quadrature, the baseline over {n} seeds" if n > 1 else
                            "SE over the returned models' seeds only: the baseline has one seed")
                         + "; each accuracy also has its own test-set SE, in its row).")
        lines.append(f"- Screening, best − uniform candidate on validation after the same {s['steps']} steps: "
                     f"{_pts(sm['screen_best_minus_uniform_val'])} points (the samples it was chosen on: biased up).")
    lines += ["", f"Command: `{r['command']}`; {r['machine']}, {r['cpus']} CPUs."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_stage_options(p, name_help="sampling_route_<model>_<target>")
    p.add_argument("--target", type=float, default=0.2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--steps", type=int, default=200, help="screening finetune steps per candidate")
    p.add_argument("--final-epochs", type=int, default=6, help="the chosen one's finetuning (the baselines' epochs)")
    a = p.parse_args()
    if a.quick:
        a.dataset, a.samples, a.steps, a.final_epochs, a.seeds = "digits", 3, 2, 1, a.seeds[:1]
    base = a.work / "base.json"
    if not base.exists():
        raise SystemExit(f"{base} not found: run benchmarks/layer_ratios.py on --work {a.work} first (it trains "
                         "the converged dense model and the L1 baselines this compares with)")
    ckpt = json.loads(base.read_text())["checkpoint"]
    data = ["--model", a.model, "--dataset", a.dataset, "--threads", str(a.threads)]
    data += [] if a.dataset == "digits" else ["--data-dir", str(a.data_dir)]
    space = ["--space", a.space] if a.space else []
    trains = ["--precision", a.precision] if a.precision != "fp32" else []
    from autoprune.data import load_dataset

    train_size = len(load_dataset(a.dataset, None if a.dataset == "digits" else a.data_dir).train)
    result: dict[str, Any] = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "command": shlex.join(["python", "benchmarks/sampling_route.py", *sys.argv[1:]]),
        "machine": platform.platform(), "cpus": os.cpu_count(), "train_size": train_size,
        "runs": {}, "baselines": {}}
    name = a.name or f"sampling_route_{a.model}_{a.target}"

    def save() -> None:
        result["summary"] = summarize(result["runs"], result["baselines"])
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / f"{name}.json").write_text(json.dumps(result, indent=1))
        (a.out / f"{name}.md").write_text(render(result))

    for seed in a.seeds:
        stage = f"sample-{a.samples}-{a.steps}-{a.target}-s{seed}"
        rep = run_stage(a.work, stage, ["sample", *data, *space, *trains, "--checkpoint", ckpt,
                                        "--target-macs", str(a.target), "--samples", str(a.samples),
                                        "--top-k", str(a.samples), "--finetune-epochs", "1",
                                        "--finetune-batches", str(a.steps), "--final-epochs", str(a.final_epochs),
                                        "--seed", str(seed), "--no-onnx"])
        screened = rep["sampling"]["top_k"]
        uniform = next(c for c in screened if c["uniform"])
        chosen = next(c for c in screened if c["index"] == rep["sampling"]["best_index"])
        result["runs"][str(seed)] = {
            **{k: rep["pruned"][k] for k in ("accuracy", "accuracy_se", "val_accuracy")},
            "macs_ratio": rep["macs_ratio"], "keep_ratios": rep["keep_ratios"], "chose_uniform": chosen["uniform"],
            "screen_best_minus_uniform_val": chosen["finetuned_val_accuracy"] - uniform["finetuned_val_accuracy"],
            "seconds": rep["wall_time_s"]}
        save()
    # the L1 baselines with the same finetuning seeds: seed 0's stage is layer_ratios.py's own
    for scope, key in (("local", "uniform-l1+ft"), ("global", "global-l1+ft")):
        for seed in a.seeds:
            stage = f"l1-{scope}-{a.target}" + (f"-s{seed}" if seed else "")
            rep = run_stage(a.work, stage, ["prune", *data, *trains, "--checkpoint", ckpt, "--target-macs",
                                            str(a.target), "--criterion", "l1", "--scope", scope,
                                            "--finetune-epochs", str(a.final_epochs), "--seed", str(seed)])
            if rep["config"]["finetune"]["epochs"] != a.final_epochs:  # equal extra training only
                raise SystemExit(f"{a.work / stage} was finetuned {rep['config']['finetune']['epochs']} epochs, "
                                 f"not --final-epochs {a.final_epochs}: use another --work or --final-epochs")
            base = result["baselines"].setdefault(key, {"seeds": {}})
            base["seeds"][str(seed)] = {**rep["pruned"], "macs_ratio": rep["macs_ratio"],
                                        "seconds": rep["wall_time_s"]}
            save()
    save()
    print(render(result))


if __name__ == "__main__":
    main()
