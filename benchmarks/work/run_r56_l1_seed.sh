#!/bin/bash
# Issue 16: the uniform (scope local) and global L1 + 6 finetune epochs baselines at 20% of the MACs for another
# finetuning seed (seed 0 is layer_ratios.py's l1-local-0.2 / l1-global-0.2), to pair with run_r56_long_ft.sh's
# seeds. Usage: run_r56_l1_seed.sh SCOPE SEED THREADS (SCOPE: local | global). Rerun to continue.
cd /work/main
W=benchmarks/work/resnet56
SCOPE=$1; SEED=$2; THREADS=${3:-2}
OUT=$W/l1-$SCOPE-0.2-s$SEED
.venv/bin/python -m autoprune prune --model resnet56 --dataset fashion-mnist --threads $THREADS \
    --data-dir /tmp/autoprune-fmnist --checkpoint $W/dense-check2/model.pt --target-macs 0.2 --criterion l1 \
    --scope $SCOPE --finetune-epochs 6 --seed $SEED --out $OUT --no-progress >> $OUT.log 2>&1
