"""Supernet on real data: ResNet-20 on Fashion-MNIST at 50% MACs, and the evaluator's speed.

1. From a trained dense ResNet-20 (``--checkpoint``), build the supernet (sandwich rule, in-place
   distillation) over the bundled resnet20 search space.
2. Compare, for the same 50%-MACs structure (the widest uniform sub-network in the budget):
   cut from the dense model (+ adaptive BN), extracted from the supernet without finetuning, and cut +
   finetuned separately for ``--finetune-epochs``. Test accuracy (read once per model, for this report).
3. Evaluator speed: full-fidelity candidate evaluations per minute (extract + adaptive BN + the whole
   validation split), partial-fidelity evaluations, and the cost of a cache hit.

Run:  .venv/bin/python benchmarks/supernet_fashion_mnist.py --checkpoint runs/bench-standard/dense/model.pt
Writes benchmarks/results/supernet_fashion_mnist.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from autoprune.data import load_dataset
from autoprune.engine.structure import ModelStructure
from autoprune.evaluate import SupernetEvaluator
from autoprune.metrics import evaluate_accuracy
from autoprune.models import build_model, load_checkpoint_into
from autoprune.pipelines.oneshot import build_supernet, resolve_space
from autoprune.seed import seed_everything
from autoprune.supernet import Supernet, SupernetConfig
from autoprune.training import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/autoprune-fmnist"))
    p.add_argument("--epochs", type=int, default=3, help="supernet epochs")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--target", type=float, default=0.5)
    p.add_argument("--bn-batches", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--run", type=Path, default=Path("runs/bench-supernet"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0)
    splits = load_dataset("fashion-mnist", args.data_dir)
    shape = splits.input_shape()
    dense = build_model("resnet20", num_classes=10, in_channels=1)
    load_checkpoint_into(dense, args.checkpoint)
    space = resolve_space(ModelStructure(dense, shape), "resnet20", None, args.target)
    counts = space.uniform(1.0)
    test = splits.test_loader()
    calib = splits.calibration_loader(64, seed=0)
    results: dict[str, object] = {"counts": counts, "macs_ratio": space.cost(counts)}

    t = time.perf_counter()
    cut = Supernet(copy.deepcopy(dense), shape).extract(counts, calibration=calib, bn_batches=args.bn_batches)
    results["cut_test_accuracy"] = evaluate_accuracy(cut, test).top1
    finetuned = copy.deepcopy(cut)
    t = time.perf_counter()
    train(finetuned, splits.train_loader(128, seed=0), TrainConfig(epochs=args.finetune_epochs, lr=0.01),
          progress=False)
    results["finetune_seconds"] = time.perf_counter() - t
    results["finetuned_test_accuracy"] = evaluate_accuracy(finetuned, test).top1
    results["dense_test_accuracy"] = evaluate_accuracy(dense, test).top1

    t = time.perf_counter()
    args.run.mkdir(parents=True, exist_ok=True)
    run = build_supernet(copy.deepcopy(dense), shape, space, splits.train_loader(128, seed=0),
                         SupernetConfig(epochs=args.epochs, lr=0.02, num_random=2),
                         checkpoint=args.run / "supernet.pt", progress=False)
    results["supernet_seconds"] = time.perf_counter() - t
    sub = run.supernet.extract(counts, calibration=calib, bn_batches=args.bn_batches)
    results["supernet_test_accuracy"] = evaluate_accuracy(sub, test).top1

    ev = SupernetEvaluator(run.supernet, splits.val_loader(256), calib, bn_batches=args.bn_batches)
    rng = np.random.default_rng(0)
    candidates = [space.sample(rng) for _ in range(6)]
    t = time.perf_counter()
    for c in candidates:
        ev.evaluate(c)
    full = (time.perf_counter() - t) / len(candidates)
    t = time.perf_counter()
    for c in [space.sample(rng) for _ in range(6)]:
        ev.evaluate(c, fidelity=4)
    partial = (time.perf_counter() - t) / 6
    t = time.perf_counter()
    for c in candidates:
        ev.evaluate(c)
    hit = (time.perf_counter() - t) / len(candidates)
    results["evaluator"] = {
        "val_samples": sum(y.numel() for _, y in ev.val), "val_batches": ev.max_fidelity, "batch_size": 256,
        "bn_batches": args.bn_batches, "bn_batch_size": 64,
        "full_eval_seconds": full, "full_evals_per_minute": 60 / full,
        "partial_eval_seconds_4_batches": partial, "cache_hit_seconds": hit, "cache_hit_speedup": full / hit,
        "stats": ev.stats.to_dict(),
    }
    meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "threads": args.threads,
            "supernet_epochs": args.epochs, "finetune_epochs": args.finetune_epochs, "torch": torch.__version__,
            "machine": platform.platform(), "date": time.strftime("%Y-%m-%d")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "supernet_fashion_mnist.json").write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    e = results["evaluator"]
    assert isinstance(e, dict)
    lines = [
        f"# Supernet on Fashion-MNIST ResNet-20, {results['macs_ratio']:.3f} of dense MACs",
        "", f"Command: `{meta['command']}` ({args.threads} CPU threads, {meta['date']})", "",
        "| model (same structure) | test accuracy | extra training |", "|---|---|---|",
        f"| dense | {results['dense_test_accuracy']:.4f} | - |",
        f"| cut from dense + adaptive BN | {results['cut_test_accuracy']:.4f} | none |",
        f"| cut + finetuned separately | {results['finetuned_test_accuracy']:.4f} | {args.finetune_epochs} epochs "
        f"({results['finetune_seconds']:.0f} s) |",
        f"| supernet sub-network, no finetuning | {results['supernet_test_accuracy']:.4f} | supernet: {args.epochs} "
        f"sandwich epochs ({results['supernet_seconds']:.0f} s), shared by every budget |",
        "", "## Evaluator", "",
        f"- full-fidelity evaluation (extract + adaptive BN on {args.bn_batches}×64 samples + "
        f"{e['val_samples']} validation samples): {e['full_eval_seconds']:.2f} s = "
        f"**{e['full_evals_per_minute']:.1f} evaluations/minute**",
        f"- partial evaluation (4 of {e['val_batches']} batches): {e['partial_eval_seconds_4_batches']:.2f} s",
        f"- cache hit: {e['cache_hit_seconds'] * 1e3:.3f} ms ({e['cache_hit_speedup']:.0f}× faster)",
    ]
    (args.out / "supernet_fashion_mnist.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
