#!/bin/bash
# ResNet-56 searches at 20% of the MACs (no training: the precision does not apply). Resumable.
cd /work/main
for s in 0 1 2; do
  .venv/bin/python - "$s" <<'PY' || exit 1
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from _stages import run_stage
s = sys.argv[1]
W = Path("benchmarks/work/resnet56")
run_stage(W, f"search-h0.3-0.2-s{s}", ["search", "--model", "resnet56", "--dataset", "fashion-mnist", "--threads", "2",
          "--data-dir", "/tmp/autoprune-fmnist", "--space", "benchmarks/spaces/resnet56_low_streams.yaml",
          "--checkpoint", "benchmarks/work/resnet56/dense-check2/model.pt",
          "--supernet", "benchmarks/work/resnet56/supernet/supernet.pt", "--target-macs", "0.2", "--trials", "40",
          "--seed", s])
PY
done
