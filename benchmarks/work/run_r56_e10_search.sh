#!/bin/bash
# Issue 16, after run_r56_e10.sh: the default search (3 seeds, 20% of the MACs) over the 10-epoch supernet
# (stage supernet-e10), against its own uniform candidate and the L1 + 6-epoch baselines. Resumable.
cd /work/main
W=benchmarks/work/resnet56
S=benchmarks/spaces/resnet56_low_streams.yaml
while pgrep -f run_r56_e10.sh > /dev/null; do sleep 30; done
[ -f $W/supernet-e10/report.json ] || { echo "supernet-e10 did not finish"; exit 1; }
.venv/bin/python benchmarks/layer_ratios.py --model resnet56 --space $S --work $W --targets 0.2 --seeds ${SEEDS:-0 1 2} \
    --precision fp32 --threads 2 --supernet-stage supernet-e10 || exit 1
