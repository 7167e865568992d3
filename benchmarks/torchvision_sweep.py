"""Every torchvision classifier through the engine: pruned correctly to 50% MACs, or refused clearly.

For each model of ``torchvision.models.list_models(module=torchvision.models)`` (untrained, ``weights=None``,
10 classes, the smallest input it accepts from 64x64 up): build its groups, prune to 50% of the dense MACs
(L1, local scope), and check the pruned model: it runs and has 10 outputs, counted MACs equal the predicted
MACs, the masked dense model computes the same (max abs difference; LayerNorm/GroupNorm groups are
approximate by design), ONNX export passes its onnxruntime check, the deploy form (BatchNorm folded,
channels-last) computes the same. A refusal (an ``AutoPruneError``) is recorded with its one-line message.

Each model runs in its own process under a memory limit (``--memory-gb``) and a time limit (``--timeout-s``);
a model that exceeds them is recorded as such.

Run:  .venv/bin/python benchmarks/torchvision_sweep.py [--models resnet18 swin_t] [--resume] [--no-onnx]
      [--memory-gb 10] [--timeout-s 300] [--threads 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

#: Inputs smaller than 64x64 that some families cannot take: ViT's position embedding is built for 224, MaxViT's
#: partitions need 224, Inception-v3 needs 75+.
SIZES = {"maxvit_t": 224, "inception_v3": 96}
DEFAULT_SIZE = 64


def input_size(name: str) -> int:
    return 224 if name.startswith("vit_") else SIZES.get(name, DEFAULT_SIZE)


def one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def check_model(name: str, *, onnx: bool, tmp: Path) -> dict[str, Any]:
    """The sweep row of one model (run in a child process)."""
    from autoprune.engine.deploy import optimize_for_inference
    from autoprune.engine.export import export_onnx
    from autoprune.engine.plan import apply_masks, apply_plan, channel_masks
    from autoprune.engine.pruner import PruneConfig
    from autoprune.engine.structure import ModelStructure, UnsupportedLayerWarning
    from autoprune.errors import AutoPruneError
    from autoprune.metrics import count_macs
    from autoprune.models.torchvision_models import build_torchvision
    from autoprune.pipelines.prune import compute_plan

    size = input_size(name)
    shape = (1, 3, size, size)
    row: dict[str, Any] = {"model": name, "input": size}
    torch.manual_seed(0)
    model = build_torchvision(name, num_classes=10).eval()
    with torch.no_grad():  # a zero-initialised head (ViT) would make every output comparison trivially equal
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                torch.nn.init.normal_(p, std=0.02)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnsupportedLayerWarning)
            structure = ModelStructure(model, shape)
            plan = compute_plan(model, shape, PruneConfig(target_macs=0.5), structure=structure)
            pruned = apply_plan(model, plan).eval()
    except AutoPruneError as exc:
        row.update(status="refused", seconds=round(time.perf_counter() - start, 1), message=one_line(exc))
        return row
    row["prune_s"] = round(time.perf_counter() - start, 1)
    row["left_out"] = sorted({str(w.message) for w in caught if issubclass(w.category, UnsupportedLayerWarning)})
    x = torch.randn(2, *shape[1:])
    with torch.no_grad():
        out = pruned(x)
    counted = count_macs(pruned, shape)
    row.update(
        status="pruned",
        groups=len(structure.groups),
        outputs=int(out.shape[-1]),
        macs_ratio=round(counted / structure.dense_macs, 4),
        predicted_equals_counted=counted == plan.meta["predicted_macs"],
    )
    masked = copy.deepcopy(model)
    apply_masks(masked, channel_masks(structure, plan))
    with torch.no_grad():
        row["masked_max_diff"] = float((masked(x) - out).abs().max())
        row["output_scale"] = float(out.abs().max())
    if onnx:
        try:
            row["onnx_max_diff"] = float(export_onnx(pruned, shape, tmp / f"{name}.onnx"))
            row["onnx_ok"] = True
        except Exception as exc:  # recorded, not raised: the table shows it
            row.update(onnx_ok=False, onnx_error=one_line(exc)[:200])
            try:
                export_onnx(model, shape, tmp / f"{name}-dense.onnx")
                row["onnx_dense_ok"] = True
            except Exception:  # the dense model does not export either: not a pruning problem
                row["onnx_dense_ok"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deploy = optimize_for_inference(pruned)
        with torch.no_grad():
            deploy_diff = float((deploy(x) - out).abs().max())
    row["deploy_max_diff"] = deploy_diff
    row["deploy_ok"] = deploy_diff <= 1e-3 * max(1.0, row["output_scale"])
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one model in a child process under the memory and time limits."""
    limit = int(args.memory_gb * 2**30)

    def bound() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "row.json"
        cmd = [sys.executable, __file__, "--child", name, "--row", str(result), "--threads", str(args.threads)]
        if not args.onnx:
            cmd.append("--no-onnx")
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, preexec_fn=bound, capture_output=True, text=True, timeout=args.timeout_s)
        except subprocess.TimeoutExpired:
            return {"model": name, "input": input_size(name), "status": "limit",
                    "message": f"over the benchmark's {args.timeout_s} s limit", "seconds": args.timeout_s}
        seconds = round(time.perf_counter() - start, 1)
        if proc.returncode == 0 and result.is_file():
            return dict(json.loads(result.read_text()))
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        memory = "MemoryError" in proc.stderr or "DefaultCPUAllocator" in proc.stderr or proc.returncode < 0
        status = "limit" if memory else "crash"
        note = f"over the benchmark's {args.memory_gb:g} GB memory limit" if memory else tail[:300]
        return {"model": name, "input": input_size(name), "status": status, "message": note, "seconds": seconds}


#: Short names of the reasons groups are left out (see autoprune/engine/discovery.py and probe.py).
REASONS = {
    "maps as a flatten": "reshape cycle",
    "walk of its channels fails": "walk fails",
    "maps its channels to index": "index out of range",
    "nn.MultiheadAttention": "attention embedding",
    "breaks the model's forward pass": "breaks forward",
    "channel mapping Torch-Pruning cannot build": "unmappable op",
    "not supported by the dependency graph": "unsupported layer",
}


def left_out(messages: list[str]) -> str:
    """``"reshape cycle 12, walk fails 8"``: groups left out per short reason."""
    counts: dict[str, int] = {}
    for message in messages:
        head = message.split(" group(s)")[0]
        n = int(head) if head.isdigit() else 1
        reason = next((short for key, short in REASONS.items() if key in message), "other")
        counts[reason] = counts.get(reason, 0) + n
    return ", ".join(f"{reason} {n}" for reason, n in counts.items())


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| model | input | status | groups | MACs ratio | predicted = counted | masked vs pruned max diff "
            "(output scale) | ONNX | deploy form | seconds | refusal / note |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        if r["status"] != "pruned":
            lines.append(f"| {r['model']} | {r['input']} | {r['status']} | | | | | | | {r.get('seconds', '')} | "
                         f"{r.get('message', '').replace('|', '/')} |")
            continue
        onnx = "ok" if r.get("onnx_ok") else ("—" if "onnx_ok" not in r else "fails: " + r.get("onnx_error", "")[:80])
        if r.get("onnx_dense_ok") is False:
            onnx += " (the dense model too)"
        note = left_out(r.get("left_out", []))
        note = f"groups left out: {note}" if note else ""
        lines.append(
            f"| {r['model']} | {r['input']} | pruned | {r['groups']} | {r['macs_ratio']:.3f} | "
            f"{'yes' if r['predicted_equals_counted'] else 'NO'} | {r['masked_max_diff']:.2g} "
            f"({r['output_scale']:.2g}) | {onnx} | {'ok' if r['deploy_ok'] else 'differs'} | {r['seconds']} | "
            f"{note} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", help="model names (default: every classification model)")
    parser.add_argument("--no-onnx", dest="onnx", action="store_false")
    parser.add_argument("--memory-gb", type=float, default=10.0)
    parser.add_argument("--timeout-s", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="torchvision_sweep")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in the results; run the rest")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--row", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            args.row.write_text(json.dumps(check_model(args.child, onnx=args.onnx, tmp=Path(tmp))))
        return
    import torchvision

    every = sorted(torchvision.models.list_models(module=torchvision.models))
    names = args.models or every
    path = args.out / f"{args.name}.json"
    previous = json.loads(path.read_text()) if args.resume and path.is_file() else {"commands": [], "rows": []}
    rows = list(previous["rows"])
    done = {r["model"] for r in rows}
    commands = [*previous["commands"], "python benchmarks/torchvision_sweep.py " + " ".join(sys.argv[1:])]
    for name in names:
        if name in done:
            continue
        row = run_child(name, args)
        rows.append(row)
        print(f"{name:22s} {row['status']:8s} {row.get('seconds', '')} {row.get('message', '')[:150]}", flush=True)
        write(sorted(rows, key=lambda r: str(r["model"])), commands, every, args)


def write(rows: list[dict[str, Any]], commands: list[str], every: list[str], args: argparse.Namespace) -> None:
    machine = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
               "threads": args.threads, "memory_gb_limit": args.memory_gb, "timeout_s": args.timeout_s}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps({"commands": commands, "machine": machine, "rows": rows},
                                                           indent=1))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("pruned", "refused", "limit", "crash")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    missing = sorted(set(every) - {r["model"] for r in rows})
    not_run = f"\n\nNot run yet ({len(missing)}; add them with `--resume`): {', '.join(missing)}." if missing else ""
    runs = "\n".join(f"- `{c}`" for c in commands)
    (args.out / f"{args.name}.md").write_text(
        f"# torchvision classifiers through the engine (50% MACs, L1, local)\n\n{runs}\n\n"
        f"Machine: {machine}\n\n{len(rows)} models: {summary}.{not_run}\n\n{table(rows)}\n"
    )


if __name__ == "__main__":
    main()
