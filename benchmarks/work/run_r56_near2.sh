#!/bin/bash
# Issue 16: a second epoch near the 20% budget (stage supernet-near0.2b continues supernet-near0.2 with the
# same recipe), scored on the same 19 fidelity candidates, then the default search over it. Resumable.
cd /work/main
W=benchmarks/work/resnet56
S=benchmarks/spaces/resnet56_low_streams.yaml
while pgrep -f run_r56_near_eval.sh > /dev/null; do sleep 30; done
.venv/bin/python -m autoprune supernet --model resnet56 --dataset fashion-mnist --data-dir /tmp/autoprune-fmnist \
    --space $S --init-supernet $W/supernet-near0.2/supernet.pt --target-macs 0.2 --sample-near 0.17:0.23 \
    --supernet-epochs 1 --lr 0.005 --precision fp32 --threads 2 --out $W/supernet-near0.2b --no-progress || exit 1
.venv/bin/python benchmarks/supernet_fidelity.py --model resnet56 --space $S --work $W --target 0.2 \
    --candidates 16 --also-calibration train:40 train:160 --replicates 3 --precision fp32 --threads 2 \
    --also near0.2=$W/supernet-near0.2/supernet.pt near0.2b=$W/supernet-near0.2b/supernet.pt || exit 1
.venv/bin/python benchmarks/layer_ratios.py --model resnet56 --space $S --work $W --targets 0.2 --seeds 0 1 2 \
    --precision fp32 --threads 2 --supernet-stage supernet-near0.2b || exit 1
