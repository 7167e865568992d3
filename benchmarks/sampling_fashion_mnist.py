"""Sub-model sampling (EagleEye-style) on real data: ResNet-20 on Fashion-MNIST at 50% MACs.

From a trained dense ResNet-20 (``--checkpoint``): draw ``--samples`` feasible candidates over the bundled
resnet20 search space, score each with adaptive BN on the original weights (and without BN recalibration),
finetune the ``--top-k`` best briefly, keep the best by validation accuracy. Reported: test accuracy of
the dense model and of the winner (the test split is read only here, for the report), the Spearman rank
correlation between the cheap score and the accuracy after finetuning over the top k, the same for the
score without BN recalibration, and wall times. Baseline: the widest uniform sub-network within the
budget, cut from the same weights with adaptive BN and finetuned with the same settings.

Run:  .venv/bin/python benchmarks/sampling_fashion_mnist.py --checkpoint /tmp/fm-bench/dense/model.pt
Writes benchmarks/results/sampling_fashion_mnist.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from itertools import islice
from pathlib import Path

import torch

from autoprune.data import load_dataset
from autoprune.engine.structure import ModelStructure
from autoprune.metrics import evaluate_accuracy
from autoprune.models import build_model, load_checkpoint_into
from autoprune.pipelines.oneshot import resolve_space
from autoprune.pipelines.sampling import LimitedLoader, SamplingConfig, run_sampling
from autoprune.seed import seed_everything
from autoprune.supernet import Supernet
from autoprune.training import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/autoprune-fmnist"))
    p.add_argument("--dataset", default="fashion-mnist", help="digits: a quick check of the script itself")
    p.add_argument("--target", type=float, default=0.5)
    p.add_argument("--strategy", default="uniform")
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--bn-batches", type=int, default=10)
    p.add_argument("--val-batches", type=int, default=8, help="validation batches of 256 for scoring")
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--finetune-batches", type=int, default=100, help="training batches of 128 per finetune epoch")
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    seed_everything(0)
    splits = load_dataset(args.dataset, None if args.dataset == "digits" else args.data_dir)
    shape = splits.input_shape()
    dense = build_model("resnet20", num_classes=10, in_channels=1)
    load_checkpoint_into(dense, args.checkpoint)
    dense.eval()
    space = resolve_space(ModelStructure(dense, shape), "resnet20", None, args.target)
    val = list(islice(splits.val_loader(256), args.val_batches))
    finetune = TrainConfig(epochs=args.finetune_epochs, lr=args.finetune_lr, batch_size=128)
    config = SamplingConfig(samples=args.samples, top_k=args.top_k, strategy=args.strategy,
                            bn_batches=args.bn_batches, finetune=finetune, finetune_batches=args.finetune_batches)
    result = run_sampling(dense, shape, space, train_loader=splits.train_loader(128, seed=0), val_batches=val,
                          calibration=splits.calibration_loader(64, seed=0), config=config,
                          log=lambda m: print(m, flush=True))
    sampling_s = time.perf_counter() - started
    test = splits.test_loader()
    results: dict[str, object] = {
        "dense_test_accuracy": evaluate_accuracy(dense, test).top1,
        "best_test_accuracy": evaluate_accuracy(result.model, test).top1,
        "best_macs_ratio": result.best.result.macs_ratio,
        "best_val_accuracy_after_finetune": result.best.finetuned_val_accuracy,
        "best_counts": result.best.counts,
        "top_k": [result.candidates[i].to_dict() for i in result.top],
        "correlation": result.correlation,
        "seconds": {**{k: round(v, 1) for k, v in result.seconds.items()}, "sampling_pipeline_total": sampling_s},
        "score_range": [min(c.result.accuracy for c in result.candidates),
                        max(c.result.accuracy for c in result.candidates)],
        "uniform_adaptive_bn_score": result.uniform.accuracy,
    }
    # baseline: the widest uniform sub-network within the budget, same cut + adaptive BN + finetune
    t = time.perf_counter()
    counts = space.uniform(1.0)
    calib = list(islice(splits.calibration_loader(64, seed=0), args.bn_batches))
    cut = Supernet(copy.deepcopy(dense), shape).extract(counts, calibration=calib, bn_batches=args.bn_batches)
    torch.manual_seed(0)
    train(cut, LimitedLoader(splits.train_loader(128, seed=0), args.finetune_batches), finetune, progress=False)
    results["uniform_baseline"] = {"macs_ratio": space.cost(counts), "test_accuracy": evaluate_accuracy(cut, test).top1,
                                   "val_accuracy": evaluate_accuracy(cut, val).top1,
                                   "seconds": time.perf_counter() - t}  # fmt: skip
    meta = {"command": " ".join([".venv/bin/python", *sys.argv]), "threads": args.threads,
            "settings": {k: str(v) for k, v in vars(args).items()}, "val_samples": sum(y.numel() for _, y in val),
            "train_samples": len(splits.train),  # type: ignore[arg-type]
            "torch": torch.__version__, "machine": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sampling_fashion_mnist.json").write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    _write_md(args, meta, results)


def _write_md(args: argparse.Namespace, meta: dict[str, object], r: dict[str, object]) -> None:
    corr = r["correlation"]
    base = r["uniform_baseline"]
    secs = r["seconds"]
    assert isinstance(corr, dict) and isinstance(base, dict) and isinstance(secs, dict)

    def f(v: object) -> str:
        return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    top = r["top_k"]
    assert isinstance(top, list)
    lines = [
        f"# Sub-model sampling on Fashion-MNIST ResNet-20 at {args.target:.0%} MACs",
        "", f"Command: `{meta['command']}` ({args.threads} CPU thread, {meta['date']}, shared 2-core machine)", "",
        f"Settings: {args.samples} {args.strategy} samples scored with adaptive BN ({args.bn_batches}×64 calibration "
        f"samples) on {meta['val_samples']} validation samples; top {args.top_k} finetuned for "
        f"{args.finetune_epochs} epoch(s) of **{args.finetune_batches} batches of 128** "
        f"({args.finetune_batches * 128} samples of the {meta['train_samples']} training images), "
        f"lr {args.finetune_lr}.",
        "", "| model | MACs ratio | test accuracy |", "|---|---|---|",
        f"| dense | 1.000 | {r['dense_test_accuracy']:.4f} |",
        f"| **best of {args.samples} sampled, finetuned** | {r['best_macs_ratio']:.3f} | "
        f"**{r['best_test_accuracy']:.4f}** |",
        f"| uniform (widest within budget), cut + adaptive BN + same finetune | {base['macs_ratio']:.3f} | "
        f"{base['test_accuracy']:.4f} |",
        "", "Top k (validation accuracy):", "",
        "| candidate | MACs ratio | adaptive-BN score | score without BN recalibration | after finetune |",
        "|---|---|---|---|---|",
        *[f"| {c['index']} | {c['macs_ratio']:.3f} | {c['score']:.4f} | {f(c['score_without_bn'])} | "
          f"{f(c['finetuned_val_accuracy'])} |" for c in top],
        "", f"Spearman rank correlation over the top {corr.get('n_top_k')}: adaptive-BN score vs finetuned "
        f"{f(corr.get('adaptive_bn_score_vs_finetuned'))}; score without BN recalibration vs finetuned "
        f"{f(corr.get('no_bn_score_vs_finetuned'))}. Over all {corr.get('n_all')} samples, adaptive-BN score vs "
        f"score without recalibration: {f(corr.get('adaptive_bn_vs_no_bn_score_all'))}. With k={args.top_k} these "
        "correlations rest on very few points: read them as anecdotes, not estimates.",
        "", f"Wall time: scoring {secs['scoring']:.0f} s, finetuning the top k {secs['finetuning']:.0f} s, "
        f"pipeline total {secs['sampling_pipeline_total']:.0f} s (uniform baseline {base['seconds']:.0f} s extra).",
    ]  # fmt: skip
    (args.out / "sampling_fashion_mnist.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
