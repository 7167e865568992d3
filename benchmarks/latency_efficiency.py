"""How much of the speedup the MACs promise does a pruned model deliver? (issue 18, "Latency you can trust")

Runs the product's own commands, stage by stage, and times what they export:

1. the dense model: ``--checkpoint``, or ``autoprune train``;
2. the supernet: ``--supernet``, or ``autoprune supernet`` from the dense model (over ``--space``);
3. ``autoprune groups --latency-steps --batch B --write-space WORK/measured_space.yaml``: each group's
   channel rounding from its measured latency steps (groups without a clear step keep the space's own);
4. ``autoprune search`` three times over that one supernet, same searcher, trials and seed:
   (a) ``--target-macs T`` (the MACs budget); (b) ``--target-latency L`` with the space's global rounding;
   (c) ``--target-latency L --space WORK/measured_space.yaml`` (the measured per-group rounding); the
   latency budgets predicted at batch B in the deploy form (``--latency-batch-size B --latency-form deploy``);
5. the dense model and the three winners (``plan.json`` + ``model.safetensors`` of each run, rebuilt with
   ``load_pruned``) in the deploy form (BatchNorm folded, channels-last), timed in ONE interleaved run at
   batch B (``measure_interleaved``). Per row: MACs ratio, measured latency ratio (median of the per-round
   ratios to dense, and its IQR), efficiency = (1 / latency ratio) / (1 / MACs ratio), i.e. the speedup
   achieved over the speedup the MACs promise (1.0: latency falls like MACs), validation accuracy (the
   winner as each search fixed it) and test accuracy (read once, by the search).

``--profile`` also runs ``torch.profiler`` on the dense model and the (c) winner (deploy form, batch B) and
writes the operators with the most self CPU time, to explain where the time goes.

Each stage is a run folder under ``--work``; a finished one (``report.json`` present) is read, not rerun.
Results: ``--out/latency_efficiency[_quick].json`` and ``.md``.

Full run (ResNet-20 on Fashion-MNIST at batch 128, 2 threads, over the trained dense model and supernet of
the issue-15 comparison; without ``--checkpoint`` / ``--supernet`` they are trained here first, 20 and 6
epochs; roughly an hour on 2 CPU cores, most of it the three searches)::

    .venv/bin/python benchmarks/latency_efficiency.py --model resnet20 --dataset fashion-mnist \\
        --data-dir /tmp/autoprune-fmnist --checkpoint /tmp/fm-bench/dense/model.pt \\
        --supernet /tmp/fm-bench/sn2/supernet.pt --work /tmp/latency_efficiency --threads 2 --batch 128 \\
        --target-macs 0.5 --target-latency 0.5 --trials 40 --rounds 30 --steps-rounds 10 --profile

Quick (digits, tiny settings; what tests/benchmarks/test_latency_efficiency.py runs)::

    .venv/bin/python benchmarks/latency_efficiency.py --quick --work /tmp/latency_efficiency_quick --profile
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stages import run_stage as _stage

from autoprune.engine import load_pruned, optimize_for_inference
from autoprune.metrics import PROTOCOL, count_macs, measure_interleaved, ratio
from autoprune.models import build_model, load_checkpoint_into

ROOT = Path(__file__).resolve().parents[1]
ROWS = {  # row -> what it is
    "macs": "MACs budget (search --target-macs)",
    "latency": "latency budget, global rounding",
    "latency-measured": "latency budget, measured per-group rounding",
}
EQUAL = "macs-equal"  # --equal-macs: a MACs budget near the latency winners' MACs, to compare at equal latency


def _space_round_to(space: str | None, model: str) -> int:
    """The global ``round_to`` of ``--space`` (a YAML file or bundled name; the model's bundled one by default)."""
    name = space or model
    path = Path(name) if Path(name).is_file() else ROOT / "search_spaces" / f"{name}.yaml"
    if not path.is_file():  # 'auto' or a model without a bundled space: auto_space's rounding
        return 1
    return int((yaml.safe_load(path.read_text()) or {}).get("round_to", 1))


def _rounding_summary(space_file: Path | None, global_round_to: int) -> str:
    if space_file is None:
        return f"global {global_round_to}"
    groups = yaml.safe_load(space_file.read_text())["groups"]
    counts: dict[int, int] = {}
    for g in groups.values():
        r = int(g.get("round_to", global_round_to))
        counts[r] = counts.get(r, 0) + 1
    return "per group: " + ", ".join(f"{n} x {r}" for r, n in sorted(counts.items(), reverse=True))


def _profile(model: torch.nn.Module, shape: tuple[int, ...], batch: int, top: int, passes: int = 5) -> dict[str, Any]:
    """Operators with the most self CPU time over ``passes`` forward passes (after two untimed ones)."""
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn((batch, *shape[1:]))
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(passes):
                model(x)
    events = list(prof.key_averages())
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {"passes": passes, "total_self_cpu_ms_per_pass": total / 1e3 / passes,
            "ops": [{"op": e.key, "calls_per_pass": e.count / passes, "self_cpu_ms_per_pass": e.self_cpu_time_total
                     / 1e3 / passes, "share": e.self_cpu_time_total / total} for e in ranked]}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/autoprune-fmnist"))
    p.add_argument("--checkpoint", type=Path, help="trained dense weights (default: `autoprune train` here)")
    p.add_argument("--supernet", type=Path, help="supernet.pt of that model (default: `autoprune supernet` here)")
    p.add_argument("--space", help="search space (YAML, bundled name or 'auto'); default: the model's own")
    p.add_argument("--work", type=Path, required=True, help="folder of the stages' run folders (kept, resumable)")
    p.add_argument("--train-epochs", type=int, default=20)
    p.add_argument("--supernet-epochs", type=int, default=6)
    p.add_argument("--target-macs", type=float, default=0.5)
    p.add_argument("--target-latency", type=float, help="fraction of the dense latency (default: --target-macs)")
    p.add_argument("--equal-macs", type=float,
                   help="also search a MACs budget this small (e.g. the latency winners' MACs ratio) and time it "
                        "in the same run, to compare accuracy with the latency winners at equal measured latency")
    p.add_argument("--searcher", default="tpe")
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=128, help="batch size of the latency budgets and the timing")
    p.add_argument("--rounds", type=int, default=30, help="rounds of the interleaved timing run")
    p.add_argument("--steps-rounds", type=int, default=10, help="rounds per group of `groups --latency-steps`")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--profile", action="store_true", help="torch.profiler on dense and the (c) winner")
    p.add_argument("--profile-top", type=int, default=12, help="operators listed per profiled model")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--quick", action="store_true", help="digits, tiny settings: checks that the script runs")
    a = p.parse_args(argv)
    if a.quick:
        a.dataset, a.train_epochs, a.supernet_epochs, a.trials, a.rounds, a.steps_rounds = "digits", 2, 1, 4, 5, 3
        a.target_latency = a.target_latency or 0.8  # digits' 8x8 inputs: fixed costs weigh more
    target_latency = a.target_latency or a.target_macs
    torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()
    a.work.mkdir(parents=True, exist_ok=True)
    data = ["--model", a.model, "--dataset", a.dataset, "--threads", str(a.threads)]
    data += [] if a.dataset == "digits" else ["--data-dir", str(a.data_dir)]
    space = ["--space", a.space] if a.space else []

    checkpoint = a.checkpoint
    if checkpoint is None:
        _stage(a.work, "dense", ["train", *data, "--train-epochs", str(a.train_epochs)])
        checkpoint = a.work / "dense" / "model.pt"
    supernet = a.supernet
    if supernet is None:
        _stage(a.work, "supernet", ["supernet", *data, *space, "--checkpoint", str(checkpoint),
                                    "--supernet-epochs", str(a.supernet_epochs)])  # fmt: skip
        supernet = a.work / "supernet" / "supernet.pt"
    global_round_to = _space_round_to(a.space, a.model)
    measured_space = a.work / "measured_space.yaml"
    steps = _stage(a.work, "latency-steps", ["groups", *data, *space, "--latency-steps", "--batch", str(a.batch),
                                             "--rounds", str(a.steps_rounds), "--round-to", str(global_round_to),
                                             "--write-space", str(measured_space)], progress=False)  # fmt: skip
    search = [*data, "--checkpoint", str(checkpoint), "--supernet", str(supernet), "--searcher", a.searcher,
              "--trials", str(a.trials), "--seed", str(a.seed), "--no-onnx"]  # fmt: skip
    latency = ["--target-latency", str(target_latency), "--latency-batch-size", str(a.batch), "--latency-form",
               "deploy"]  # fmt: skip
    reports = {
        "macs": _stage(a.work, "search-macs", ["search", *search, *space, "--target-macs", str(a.target_macs)]),
        "latency": _stage(a.work, "search-latency", ["search", *search, *space, *latency]),
        "latency-measured": _stage(a.work, "search-latency-measured",
                                   ["search", *search, "--space", str(measured_space), *latency]),
    }
    rows_what = dict(ROWS)
    if a.equal_macs is not None:
        reports[EQUAL] = _stage(a.work, f"search-{EQUAL}", ["search", *search, *space, "--target-macs",
                                                             str(a.equal_macs)])  # fmt: skip
        rows_what[EQUAL] = f"MACs budget {a.equal_macs} (near the latency winners' MACs)"

    first = reports["macs"]
    shape = (1, int(first["in_channels"]), *(int(v) for v in first["image_size"]))

    def base() -> torch.nn.Module:
        return build_model(a.model, num_classes=int(first["num_classes"]), in_channels=shape[1])

    dense = base()
    load_checkpoint_into(dense, checkpoint)
    models = {"dense": dense.eval()}
    for key in rows_what:
        run = a.work / f"search-{key}"
        models[key] = load_pruned(base(), run / "plan.json", run / "model.safetensors").eval()
    deploy = {k: optimize_for_inference(m) for k, m in models.items()}
    print(f"timing {len(deploy)} models in the deploy form at batch {a.batch}, {a.rounds} interleaved rounds",
          flush=True)
    stats = measure_interleaved(deploy, shape, batch_size=a.batch, rounds=a.rounds, warmup=3, threads=a.threads)
    dense_macs = count_macs(dense, shape)
    rows = []
    for key, model in models.items():
        rep = reports.get(key)
        r = ratio(stats, key, "dense")
        macs_ratio = count_macs(model, shape) / dense_macs
        row: dict[str, Any] = {
            "row": key, "what": rows_what.get(key, "dense"), "macs_ratio": macs_ratio,
            "latency_ms": stats[key].median_ms, "latency_iqr_ms": stats[key].iqr_ms,
            "latency_ratio": r.median, "latency_ratio_iqr": r.iqr, "latency_ratio_q1": r.q1, "latency_ratio_q3": r.q3,
            "efficiency": (1 / r.median) / (1 / macs_ratio),
            "rounding": _rounding_summary(measured_space if key == "latency-measured" else None, global_round_to),
        }  # fmt: skip
        if rep is None:
            row.update(val_accuracy=first["dense"].get("val_accuracy"), accuracy=first["dense"].get("accuracy"),
                       accuracy_se=first["dense"].get("accuracy_se"))  # fmt: skip
        else:
            row.update(val_accuracy=rep["winner"]["val_accuracy"], val_accuracy_se=rep["winner"]["val_accuracy_se"],
                       accuracy=rep["pruned"]["accuracy"], accuracy_se=rep["pruned"]["accuracy_se"],
                       budget=(f"latency {target_latency}" if key.startswith("latency") else
                               f"MACs {a.equal_macs if key == EQUAL else a.target_macs}"),
                       predicted_latency_ratio=rep.get("latency_check", {}).get("predicted_ratio"),
                       search_s=rep.get("wall_time_s"), run=str(a.work / f"search-{key}"))  # fmt: skip
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "run"}), flush=True)
    profile = {}
    if a.profile:
        for key in ("dense", "latency-measured"):
            print(f"profiling {key} (deploy form, batch {a.batch})", flush=True)
            profile[key] = _profile(deploy[key], shape, a.batch, a.profile_top)
    meta = {
        "command": " ".join(["python", "benchmarks/latency_efficiency.py", *(sys.argv[1:] if argv is None else argv)]),
        "model": a.model, "dataset": a.dataset, "checkpoint": str(checkpoint), "supernet": str(supernet),
        "searcher": a.searcher, "trials": a.trials, "seed": a.seed, "target_macs": a.target_macs,
        "target_latency": target_latency, "equal_macs": a.equal_macs, "global_round_to": global_round_to,
        "space_file": str(measured_space),
        "latency_steps": {k: steps["latency_steps"][k] for k in ("batch_size", "form", "scope", "rounds", "threads",
                                                                  "steps", "spacing", "seconds")},
        "torch": torch.__version__, "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        "wall_s": round(time.perf_counter() - started, 1), "date": time.strftime("%Y-%m-%d %H:%M"),
    }  # fmt: skip
    timing = {"protocol": PROTOCOL, "form": "deploy", "batch_size": a.batch, "rounds": stats["dense"].rounds,
              "warmup": stats["dense"].warmup, "threads": stats["dense"].threads, "device": stats["dense"].device}
    result = {"meta": meta, "latency": timing, "rows": rows, "profile": profile}
    a.out.mkdir(parents=True, exist_ok=True)
    stem = "latency_efficiency_quick" if a.quick else "latency_efficiency"
    (a.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (a.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return result


def _pm(value: float | None, se: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" + ("" if se is None else f" ± {se:.4f}")


def markdown(result: dict[str, Any]) -> str:
    m, t = result["meta"], result["latency"]
    equal = "" if m.get("equal_macs") is None else f"; {m['equal_macs']} of the dense MACs"
    load = "; ".join(f"{w}: {', '.join(f'{x:.2f}' for x in m[f'load_average_{w}'])}" for w in ("before", "after"))
    lines = [
        f"# Achieved vs ideal speedup: {m['model']} on {m['dataset']}, deploy form, batch {t['batch_size']}",
        "",
        f"Command: `{m['command']}`  ",
        f"Machine: {m['machine']} ({m['cpu_count']} CPUs), torch {m['torch']}, {t['threads']} threads, {m['date']}, "
        f"{m['wall_s']} s  ",
        f"Load average (1, 5, 15 min) {load}",
        "",
        f"Searches: {m['searcher']}, {m['trials']} trials, seed {m['seed']}, one supernet, winners without "
        f"finetuning. Budgets: {m['target_macs']} of the dense MACs; {m['target_latency']} of the dense latency "
        f"predicted at batch {t['batch_size']} in the deploy form"
        f"{equal}. Per-group rounding: `autoprune groups "
        f"--latency-steps` ({m['latency_steps']['rounds']} rounds per group, steps {m['latency_steps']['steps']}, "
        f"{m['latency_steps']['seconds']:.0f} s), groups without a clear step keep {m['global_round_to']}.",
        "",
        "| row | rounding | MACs ratio | latency ratio [IQR] | predicted | efficiency | val acc ± SE | test acc ± SE "
        "| latency ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        predicted = "-" if r.get("predicted_latency_ratio") is None else f"{r['predicted_latency_ratio']:.3f}"
        lines.append(
            f"| {r['what']} | {r['rounding']} | {r['macs_ratio']:.3f} | {r['latency_ratio']:.3f} "
            f"[{r['latency_ratio_iqr']:.3f}] | {predicted} | {r['efficiency']:.2f} | "
            f"{_pm(r['val_accuracy'], r.get('val_accuracy_se'))} | {_pm(r['accuracy'], r.get('accuracy_se'))} | "
            f"{r['latency_ms']:.2f} |"
        )
    lines += ["", "Efficiency = (1 / latency ratio) / (1 / MACs ratio): the speedup achieved over the speedup the "
              "MACs promise (1.0: latency falls like MACs). Predicted: the latency table's ratio for the winner "
              "(latency budgets; the search's own `latency_check`). Latency ratio = median of the per-round "
              f"ratios to the dense model, all models in one run ({t['rounds']} rounds, {t['warmup']} warm-up "
              f"passes each): {t['protocol']}."]  # fmt: skip
    rows = {r["row"]: r for r in result["rows"]}
    if EQUAL in rows:
        eq = rows[EQUAL]
        lines += ["", f"## Latency winners vs the MACs-budget winner at {m['equal_macs']} of the MACs", ""]
        for key in ("latency", "latency-measured"):
            r = rows[key]
            diff, se = r["accuracy"] - eq["accuracy"], (r["accuracy_se"] ** 2 + eq["accuracy_se"] ** 2) ** 0.5
            lines.append(f"- {r['what']}: latency ratio {r['latency_ratio']:.3f} vs {eq['latency_ratio']:.3f}, test "
                         f"accuracy {100 * diff:+.2f} ± {100 * se:.2f} points (independent test-set SEs combined).")
    for key, prof in result.get("profile", {}).items():
        lines += ["", f"## Where the time goes: {key} (torch.profiler, {prof['passes']} passes, "
                  f"{prof['total_self_cpu_ms_per_pass']:.2f} ms self CPU per pass)", "",
                  "| operator | calls per pass | self CPU ms per pass | share |", "|---|---|---|---|"]  # fmt: skip
        for op in prof["ops"]:
            lines.append(f"| `{op['op']}` | {op['calls_per_pass']:g} | {op['self_cpu_ms_per_pass']:.3f} | "
                         f"{100 * op['share']:.1f}% |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
