#!/bin/bash
# Issue 16, after run_r56_near.sh: the specialised supernet (stage supernet-near0.2) scored on the 19 fidelity
# candidates at 20% (same ground truth), then the default search over it (3 seeds). Resumable.
cd /work/main
W=benchmarks/work/resnet56
S=benchmarks/spaces/resnet56_low_streams.yaml
while pgrep -f run_r56_near.sh > /dev/null; do sleep 30; done
[ -f $W/supernet-near0.2/report.json ] || { echo "supernet-near0.2 did not finish"; exit 1; }
.venv/bin/python benchmarks/supernet_fidelity.py --model resnet56 --space $S --work $W --target 0.2 \
    --candidates 16 --also-calibration train:40 train:160 --replicates 3 --precision fp32 --threads 2 \
    --also near0.2=$W/supernet-near0.2/supernet.pt || exit 1
.venv/bin/python benchmarks/layer_ratios.py --model resnet56 --space $S --work $W --targets 0.2 --seeds 0 1 2 \
    --precision fp32 --threads 2 --supernet-stage supernet-near0.2 || exit 1
