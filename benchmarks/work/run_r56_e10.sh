#!/bin/bash
# Issue 16, "more epochs": a second ResNet-56 supernet trained from the same converged dense model with the first
# one's recipe (sandwich, 2 random + smallest + largest per step, in-place distillation, lr 0.02 cosine, bf16) for
# 10 epochs instead of 6, then the 19 fidelity candidates at 20% scored on it (same ground truth; page
# fidelity_resnet56_0.2_e10). bf16 here: this CPU has AVX512-BF16 (~1.5x fp32 for ResNet-56 training steps).
# Resumable: rerun to continue (finished epochs are kept).
cd /work/main
W=benchmarks/work/resnet56
S=benchmarks/spaces/resnet56_low_streams.yaml
.venv/bin/python -m autoprune supernet --model resnet56 --dataset fashion-mnist --data-dir /tmp/autoprune-fmnist \
    --checkpoint $W/dense-check2/model.pt --space $S --supernet-epochs 10 --lr 0.02 --precision bf16 --threads 2 \
    --out $W/supernet-e10 --no-progress || exit 1
.venv/bin/python benchmarks/supernet_fidelity.py --model resnet56 --space $S --work $W --target 0.2 \
    --candidates 16 --replicates 3 --precision fp32 --threads 2 --name fidelity_resnet56_0.2_e10 \
    --also e10=$W/supernet-e10/supernet.pt || exit 1
