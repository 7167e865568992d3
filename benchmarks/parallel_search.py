"""Throughput of ``autoprune search --workers 1`` vs ``--workers 2`` on this machine (issue 17, parallel episodes).

For each searcher (default: ``tpe``, whose two processes share an Optuna study, and ``ddpg``, whose two
evaluator processes run parallel episodes) the same command runs with one and with two workers, over one
supernet, in ONE interleaved run: every round runs each (searcher, workers) pair once, the order of 1 and 2
workers alternating from round to round, so that drift of a shared machine falls on both alike. Measured per
run, from the outside (the script polls ``trials.jsonl`` every 50 ms):

- ``trials_per_min``: trials logged per minute from the first logged trial to the last (steady state: the
  start-up of data, supernet and worker processes is left out);
- ``time_to_trials_s``: from the command's start until the last trial is logged (start-up included);
- ``command_s``: the whole command (the winner's re-scoring, test metrics and export included).

The report gives the median of each over the rounds, and per round the ratio of 2-worker to 1-worker
throughput. Every process gets ``max(1, threads // workers)`` torch threads (``--threads`` is divided).

Run (ResNet-20 Fashion-MNIST supernet, 2 CPU cores; ``rounds x 4`` searches, each a few minutes)::

    .venv/bin/python benchmarks/parallel_search.py --supernet /tmp/fm-bench/sn6/supernet.pt \\
        --checkpoint /tmp/fm-bench/dense/model.pt --model resnet20 --dataset fashion-mnist \\
        --data-dir /tmp/autoprune-fmnist --trials 40 --rounds 3 --threads 2

``--quick`` builds a tiny digits supernet and runs one short round (checks that the script runs; CI).
Writes ``--out/parallel_search.{json,md}`` (``parallel_search_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
POLL_S = 0.05


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernet", type=Path, help="supernet.pt from `autoprune supernet` (required unless --quick)")
    p.add_argument("--checkpoint", type=Path, help="the dense model.pt (optional: the report's dense row)")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--trials", type=int, default=40, help="trials of every search")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the interleaved runs")
    p.add_argument("--threads", type=int, default=2, help="CPU threads, divided between the processes of a search")
    p.add_argument("--searchers", nargs="+", default=["tpe", "ddpg"])
    p.add_argument("--bn-batches", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, help="folder of the searches' run folders (default: a temporary one)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--intra-op-rounds", type=int, default=8,
                   help="rounds of the intra-op ceiling (intra_op_scaling.py) after the searches; 0: skip")
    p.add_argument("--quick", action="store_true", help="digits, a tiny supernet, 1 round of 8 trials")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.dataset, args.data_dir, args.checkpoint = "resnet20", "digits", None, None
        args.trials, args.rounds, args.bn_batches = min(args.trials, 8), 1, 2
        args.intra_op_rounds = min(args.intra_op_rounds, 1)
    elif args.supernet is None:
        p.error("--supernet is required (or --quick)")
    with tempfile.TemporaryDirectory(prefix="parallel-search-") as tmp:
        work = args.work or Path(tmp)
        if args.quick and args.supernet is None:
            args.supernet = _quick_supernet(work / "supernet", args.threads)
        runs = _interleaved(args, work)
        ceiling = None
        if args.intra_op_rounds > 0 and args.threads >= 2:
            from intra_op_scaling import measure

            ceiling = measure(args.supernet, args.model, args.dataset, args.data_dir, threads=args.threads,
                              rounds=args.intra_op_rounds, bn_batches=args.bn_batches, seed=args.seed)
    result = {"meta": _meta(args, argv), "runs": runs, "summary": _summary(runs, args.searchers, args.rounds),
              "intra_op": ceiling}
    name = "parallel_search_quick" if args.quick else "parallel_search"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = _markdown(result)
    (args.out / f"{name}.md").write_text(text)
    print(text)
    return result


def _autoprune(*args: str) -> list[str]:
    return [sys.executable, "-m", "autoprune", *args]


def _quick_supernet(out: Path, threads: int) -> Path:
    cmd = _autoprune("supernet", "--model", "resnet20", "--dataset", "digits", "--train-epochs", "2",
                     "--supernet-epochs", "1", "--bn-batches", "2", "--out", str(out), "--no-progress",
                     "--device", "cpu", "--threads", str(threads))  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return out / "supernet.pt"


def _search_cmd(args: argparse.Namespace, searcher: str, workers: int, out: Path) -> list[str]:
    cmd = _autoprune("search", "--supernet", str(args.supernet), "--model", args.model, "--dataset", args.dataset,
                     "--searcher", searcher, "--trials", str(args.trials), "--workers", str(workers),
                     "--threads", str(args.threads), "--bn-batches", str(args.bn_batches), "--seed", str(args.seed),
                     "--out", str(out), "--no-progress", "--no-onnx", "--device", "cpu")  # fmt: skip
    if args.data_dir is not None:
        cmd += ["--data-dir", str(args.data_dir)]
    if args.checkpoint is not None:
        cmd += ["--checkpoint", str(args.checkpoint)]
    return cmd


def _interleaved(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    runs = []
    for r in range(args.rounds):
        order = (1, 2) if r % 2 == 0 else (2, 1)  # alternate which goes first
        for searcher in args.searchers:
            for workers in order:
                run = _one(args, searcher, workers, work / f"r{r}-{searcher}-w{workers}")
                run["round"] = r
                runs.append(run)
                print(f"round {r} {searcher} workers={workers}: {run['trials_per_min']:.1f} trials/min "
                      f"({run['command_s']:.1f} s)", file=sys.stderr, flush=True)
    return runs


def _one(args: argparse.Namespace, searcher: str, workers: int, out: Path) -> dict[str, Any]:
    """Run one search, timing when each trial reaches its log."""
    cmd = _search_cmd(args, searcher, workers, out)
    log, output = out / "trials.jsonl", out.parent / f"{out.name}.log"
    output.parent.mkdir(parents=True, exist_ok=True)
    seen: list[float] = []  # seen[i]: when the log first held i + 1 trials
    start = time.perf_counter()
    with output.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        while True:
            done = proc.poll() is not None
            lines = log.read_bytes().count(b"\n") if log.exists() else 0
            seen += [time.perf_counter() - start] * max(0, min(lines, args.trials) - len(seen))
            if done:
                break
            time.sleep(POLL_S)
    command_s = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} exited {proc.returncode}; see {output}")
    report = json.loads((out / "report.json").read_text())
    n = len(seen)
    steady = (n - 1) / (seen[-1] - seen[0]) * 60 if n > 1 and seen[-1] > seen[0] else float("nan")
    return {"searcher": searcher, "workers": workers, "trials": n, "trials_per_min": steady,
            "time_to_trials_s": seen[-1] if seen else float("nan"), "command_s": command_s,
            "search_wall_s": report["search"]["wall_time_s"], "evaluations": report["search"]["evaluations"],
            "best_val_accuracy": (report["search"].get("best") or {}).get("result", {}).get("accuracy"),
            "test_accuracy": report["pruned"]["accuracy"], "command": shlex.join(cmd)}  # fmt: skip


def _summary(runs: list[dict[str, Any]], searchers: list[str], rounds: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for s in searchers:
        by = {w: [r for r in runs if r["searcher"] == s and r["workers"] == w] for w in (1, 2)}
        ratios = []
        for k in range(rounds):
            one = next(r for r in by[1] if r["round"] == k)
            two = next(r for r in by[2] if r["round"] == k)
            ratios.append({"round": k, "trials_per_min": two["trials_per_min"] / one["trials_per_min"],
                           "time_to_trials": one["time_to_trials_s"] / two["time_to_trials_s"],
                           "command": one["command_s"] / two["command_s"]})  # fmt: skip
        summary[s] = {
            **{f"workers_{w}": {key: statistics.median(r[key] for r in by[w])
                                for key in ("trials_per_min", "time_to_trials_s", "command_s")} for w in (1, 2)},
            "speedup_per_round": ratios,
            "median_speedup": {key: statistics.median(x[key] for x in ratios)
                               for key in ("trials_per_min", "time_to_trials", "command")},
        }  # fmt: skip
    return summary


def _meta(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    import torch

    given = sys.argv[1:] if argv is None else argv
    return {"command": shlex.join([".venv/bin/python", "benchmarks/parallel_search.py", *given]),
            "quick": args.quick, "model": args.model, "dataset": args.dataset, "supernet": str(args.supernet),
            "trials": args.trials, "rounds": args.rounds, "threads": args.threads, "searchers": args.searchers,
            "bn_batches": args.bn_batches, "seed": args.seed, "machine": platform.machine(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "load_average": list(os.getloadavg()),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip


def _markdown(result: dict[str, Any]) -> str:
    m = result["meta"]
    lines = [f"# Parallel search: 1 vs 2 worker processes ({m['model']} on {m['dataset']}, {m['trials']} trials, "
             f"{m['threads']} threads)", "",
             f"`{m['command']}`", "",
             f"{m['date']}, {m['cpu_count']} CPUs, torch {m['torch']}, load average at the end "
             f"{', '.join(f'{x:.1f}' for x in m['load_average'])}. Medians over {m['rounds']} interleaved round(s); "
             "trials/min from the first logged trial to the last (start-up excluded); time to trials includes it.",
             "", "| searcher | workers | trials/min | time to trials (s) | command (s) |", "|---|---|---|---|---|"]
    for s, block in result["summary"].items():
        for w in (1, 2):
            b = block[f"workers_{w}"]
            lines.append(f"| {s} | {w} | {b['trials_per_min']:.1f} | {b['time_to_trials_s']:.1f} | "
                         f"{b['command_s']:.1f} |")
    lines += ["", "Speedup of 2 workers over 1, per round (trials/min; time to trials; whole command):", ""]
    for s, block in result["summary"].items():
        rounds = "; ".join(f"round {x['round']}: {x['trials_per_min']:.2f}x, {x['time_to_trials']:.2f}x, "
                           f"{x['command']:.2f}x" for x in block["speedup_per_round"])
        med = block["median_speedup"]
        lines.append(f"- **{s}**: median {med['trials_per_min']:.2f}x trials/min, {med['time_to_trials']:.2f}x "
                     f"time to trials, {med['command']:.2f}x command ({rounds})")
    if result.get("intra_op"):
        from intra_op_scaling import markdown

        lines += ["", "## The ceiling: intra-op threads of one process (`benchmarks/intra_op_scaling.py`)", "",
                  *markdown(result["intra_op"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
