#!/bin/bash
# Issue 16: does the 2-epoch ground truth's best structure (seed 0's searched winner at 20%, +0.96 ± 0.38 over
# uniform after cut + 2 finetune epochs, 3 replicates each) keep its lead after the baselines' 6 finetune epochs?
# Both structures (winner-h0.3-s0 and the space's uniform candidate, keep ratios = the counts in
# fidelity-0.2.jsonl / full widths) go through the same command: cut from the converged dense model with L1,
# 6 finetune epochs at lr 0.01, as the uniform L1 + 6 epochs baseline (l1-local-0.2) but with keep ratios instead of
# a budget. Usage: run_r56_long_ft.sh NAME SEED THREADS (NAME: winner-h0.3-s0 | uniform). Rerun to continue
# (autoprune prune resumes a stopped run).
cd /work/main
W=benchmarks/work/resnet56
NAME=$1; SEED=$2; THREADS=${3:-2}
OUT=$W/keep-$NAME-ft6-s$SEED
.venv/bin/python -m autoprune prune --model resnet56 --dataset fashion-mnist --data-dir /tmp/autoprune-fmnist \
    --checkpoint $W/dense-check2/model.pt --keep-ratios $W/$NAME-keep.json --criterion l1 --round-to 4 \
    --finetune-epochs 6 --finetune-lr 0.01 --seed $SEED --threads $THREADS --no-onnx --no-progress \
    --out $OUT >> $OUT.log 2>&1
