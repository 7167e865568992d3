#!/bin/bash
# Issue 16: does specialising the trained ResNet-56 supernet to the 20% budget make it rank better?
# One more sandwich epoch from the 6-epoch supernet (same channel ranking), random sub-networks drawn near
# 17-23% of the MACs, lr 0.005 (cosine). Resumable: rerun to continue.
cd /work/main
W=benchmarks/work/resnet56
S=benchmarks/spaces/resnet56_low_streams.yaml
.venv/bin/python -m autoprune supernet --model resnet56 --dataset fashion-mnist --data-dir /tmp/autoprune-fmnist \
    --space $S --init-supernet $W/supernet/supernet.pt --target-macs 0.2 --sample-near 0.17:0.23 \
    --supernet-epochs 1 --lr 0.005 --precision fp32 --threads 2 --out $W/supernet-near0.2 --no-progress || exit 1
