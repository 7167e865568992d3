#!/usr/bin/env bash
# The standard pipeline (train -> prune -> finetune) on real data: ResNet-20 on Fashion-MNIST, 50% MACs.
#   bash benchmarks/standard_fashion_mnist.sh [DATA_DIR] [RUN_DIR]
# Writes benchmarks/results/standard_fashion_mnist.{md,json}. About 20 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-/tmp/autoprune-fmnist}
OUT=${2:-runs/bench-standard}
EPOCHS=${EPOCHS:-10}
FT=${FT:-2}
AP=${AP:-.venv/bin/autoprune}
PY=${PY:-.venv/bin/python}
if [ ! -d "$DATA/FashionMNIST/raw" ]; then
  ../shared/data/fashion-mnist "$DATA"
fi
common=(--model resnet20 --dataset fashion-mnist --data-dir "$DATA" --seed 0 --threads 2 --no-progress)
[ -f "$OUT/dense/model.pt" ] || $AP train "${common[@]}" --epochs "$EPOCHS" --out "$OUT/dense"
prune() { local name=$1; shift; [ -f "$OUT/$name/report.json" ] || \
  $AP prune "${common[@]}" --checkpoint "$OUT/dense/model.pt" --target-macs 0.5 --finetune-epochs "$FT" \
    --out "$OUT/$name" "$@"; }
prune channel-l1-local --criterion l1 --scope local
prune channel-l1-global --criterion l1 --scope global
prune channel-taylor-local --criterion taylor --scope local
prune kernel-l1-local --criterion l1 --granularity kernel
$PY - "$OUT" "$EPOCHS" "$FT" <<'PYEOF'
import json, sys
from pathlib import Path
out, epochs, ft = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
dense = json.loads((out / "dense" / "report.json").read_text())
rows = [{"run": "dense", "accuracy": dense["dense"]["accuracy"], "macs": dense["dense"]["macs"],
         "macs_ratio": 1.0, "params": dense["dense"]["params"], "latency_ratio": 1.0}]
for name in ("channel-l1-local", "channel-l1-global", "channel-taylor-local", "kernel-l1-local"):
    r = json.loads((out / name / "report.json").read_text())
    rows.append({"run": name, "accuracy": r["pruned"]["accuracy"], "accuracy_dense": r["dense"]["accuracy"],
                 "accuracy_after_prune_val": r["rounds"][0]["val_accuracy_after_prune"],
                 "macs": r["pruned"]["macs"], "macs_ratio": r.get("effective_macs_ratio", r["macs_ratio"]),
                 "params": r["pruned"]["params"], "latency_ratio": r["latency_ratio"],
                 "wall_time_s": r["wall_time_s"]})
cmd = "bash benchmarks/standard_fashion_mnist.sh"
res = Path("benchmarks/results"); res.mkdir(parents=True, exist_ok=True)
(res / "standard_fashion_mnist.json").write_text(json.dumps({"command": cmd, "train_epochs": epochs,
    "finetune_epochs": ft, "environment": dense["environment"], "rows": rows}, indent=2) + "\n")
lines = [f"# Standard pipeline, ResNet-20 on Fashion-MNIST, 50% MACs ({epochs} training epochs, {ft} finetune epochs)",
         "", f"Command: `{cmd}`; 2 CPU threads; test accuracy on this folder's test split "
         "(the npm-package split written by shared/data/fashion-mnist, not the official one).", "",
         "| run | test acc | val acc right after pruning | MACs ratio | params | latency ratio (batch 1) |",
         "|---|---|---|---|---|---|"]
for r in rows:
    after = f"{r['accuracy_after_prune_val']:.4f}" if "accuracy_after_prune_val" in r else "-"
    lines.append(f"| {r['run']} | {r['accuracy']:.4f} | {after} | {r['macs_ratio']:.3f} | {r['params']} | "
                 f"{r['latency_ratio']:.3f} |")
lines += ["", "kernel masks: MACs ratio is effective (non-zero) MACs; dense kernels do not run faster."]
(res / "standard_fashion_mnist.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PYEOF
