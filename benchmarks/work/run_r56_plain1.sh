#!/bin/bash
# Issue 16, the control for run_r56_near.sh: is it the extra epoch or the near-budget sampling that moved the
# supernet's ranking (tau 0.33 -> 0.50 after one near epoch)? One more sandwich epoch from the 6-epoch supernet with
# the same recipe (lr 0.005, cosine, fp32) but random sub-networks over the whole space, as in its first 6 epochs.
# Then the 19 fidelity candidates at 20% scored on it (same ground truth; page fidelity_resnet56_0.2_plain1).
# Resumable: rerun to continue.
cd /work/main
W=benchmarks/work/resnet56
S=benchmarks/spaces/resnet56_low_streams.yaml
.venv/bin/python -m autoprune supernet --model resnet56 --dataset fashion-mnist --data-dir /tmp/autoprune-fmnist \
    --space $S --init-supernet $W/supernet/supernet.pt --target-macs 0.2 \
    --supernet-epochs 1 --lr 0.005 --precision fp32 --threads 2 --out $W/supernet-plain1 --no-progress || exit 1
.venv/bin/python benchmarks/supernet_fidelity.py --model resnet56 --space $S --work $W --target 0.2 \
    --candidates 16 --replicates 3 --precision fp32 --threads 2 --name fidelity_resnet56_0.2_plain1 \
    --also plain1=$W/supernet-plain1/supernet.pt || exit 1
