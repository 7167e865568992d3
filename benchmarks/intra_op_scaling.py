"""The ceiling of parallel search on this machine: how much faster is ONE candidate evaluation with more torch threads?

A search's throughput is bounded by its evaluations (extract the sub-network, adaptive BN, every validation
batch). One process at ``T`` threads already spreads each evaluation over the cores; ``T`` worker processes of
one thread each can only win what those threads leave unused. With ``S`` = (seconds of one evaluation at 1
thread) / (seconds at ``T`` threads), the best case of ``T`` one-thread workers over one ``T``-thread process
is ``T / S`` trials per minute (perfect scaling across processes, no start-up, no searcher overhead).

Measured in ONE interleaved run inside one process: every round evaluates the same candidate (a random one of
the supernet's space, projected onto ``--target``; a new one each round) at each thread count, the order of
the thread counts alternating from round to round; ``SupernetEvaluator.score`` (not cached) times the whole
evaluation. Reports median seconds per thread count, the median per-round speedup ``S`` and the ceiling
``T / S``.

Run (the supernet of ``parallel_search.py``)::

    .venv/bin/python benchmarks/intra_op_scaling.py --supernet /tmp/fm-bench/sn6/supernet.pt --model resnet20 \\
        --dataset fashion-mnist --data-dir /tmp/autoprune-fmnist --threads 2 --rounds 8

``parallel_search.py`` calls :func:`measure` after its searches, so its report holds the ceiling beside the
measured speedup. Writes ``--out/intra_op_scaling.{json,md}`` when run on its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def measure(supernet: Path, model: str, dataset: str, data_dir: Path | None, *, threads: int, rounds: int,
            bn_batches: int = 10, target: float = 0.5, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Seconds of one whole evaluation at 1 and at ``threads`` torch threads, interleaved over ``rounds``."""
    from autoprune.models.checkpoint import read_checkpoint
    from autoprune.search.pool import SupernetEvaluatorFactory
    from autoprune.search_spaces import space_from_dict

    if threads < 2 or rounds < 1:
        raise SystemExit(f"--threads {threads} / --rounds {rounds}: need at least 2 threads and 1 round")
    before = torch.get_num_threads()
    evaluator = SupernetEvaluatorFactory(supernet=str(supernet), model=model, dataset=dataset,
                                         data_dir=None if data_dir is None else str(data_dir),
                                         bn_batches=bn_batches, seed=seed)()  # fmt: skip
    _, meta = read_checkpoint(supernet)
    space = space_from_dict(meta["space"], evaluator.supernet.structure)
    space = dataclasses.replace(space, metric="macs", target=target, latency_table=None)
    rng = np.random.default_rng(seed)
    counts = [1, threads]
    seconds: dict[int, list[float]] = {t: [] for t in counts}
    speedups = []
    try:
        for r in range(rounds + 1):  # round 0 warms up both thread counts and is not kept
            candidate = space.project(space.ratios(space.sample(rng)))
            took = {}
            for t in counts if r % 2 == 0 else counts[::-1]:
                torch.set_num_threads(t)
                start = time.perf_counter()
                evaluator.score(candidate)
                took[t] = time.perf_counter() - start
            if r > 0:
                for t in counts:
                    seconds[t].append(took[t])
                speedups.append(took[1] / took[threads])
    finally:
        torch.set_num_threads(before)
    speedup = statistics.median(speedups)
    return {"threads": threads, "rounds": rounds, "target": target, "bn_batches": bn_batches,
            "validation_samples": sum(int(y.numel()) for _, y in evaluator.val),
            "median_s": {str(t): statistics.median(v) for t, v in seconds.items()},
            "speedup_per_round": speedups, "median_speedup": speedup,
            "ceiling_of_processes": threads / speedup}  # fmt: skip


def markdown(m: dict[str, Any]) -> list[str]:
    """Lines describing one :func:`measure` result."""
    t = m["threads"]
    return [f"One evaluation (extract + adaptive BN on {m['bn_batches']} batches + {m['validation_samples']} "
            f"validation samples), median of {m['rounds']} interleaved rounds: {m['median_s']['1']:.2f} s at 1 "
            f"thread, {m['median_s'][str(t)]:.2f} s at {t} threads: intra-op speedup **{m['median_speedup']:.2f}x** "
            f"(per round: {', '.join(f'{s:.2f}' for s in m['speedup_per_round'])}). So {t} one-thread worker "
            f"processes can give at most **{m['ceiling_of_processes']:.2f}x** the trials per minute of one "
            f"{t}-thread process, before any start-up or searcher overhead."]  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernet", type=Path, required=True)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--bn-batches", type=int, default=10)
    p.add_argument("--target", type=float, default=0.5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = p.parse_args(argv)
    result = measure(a.supernet, a.model, a.dataset, a.data_dir, threads=a.threads, rounds=a.rounds,
                     bn_batches=a.bn_batches, target=a.target)  # fmt: skip
    result["command"] = " ".join([".venv/bin/python", "benchmarks/intra_op_scaling.py", *sys.argv[1:]])
    result["load_average"] = list(os.getloadavg())
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "intra_op_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    text = "\n".join([f"# Intra-op scaling of one evaluation ({a.model} on {a.dataset})", "",
                      f"`{result['command']}`", "", f"{result['date']}, {os.cpu_count()} CPUs, torch "
                      f"{torch.__version__}, load average at the end "
                      f"{', '.join(f'{x:.1f}' for x in result['load_average'])}.", "", *markdown(result)]) + "\n"
    (a.out / "intra_op_scaling.md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
