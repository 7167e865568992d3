#!/bin/bash
# ResNet-56 on Fashion-MNIST (issue 16's second model). Resumable: rerun to continue.
# The dense model and the supernet were trained in bf16 on a CPU with AMX (finished stages are read, not rerun).
# The remaining training stages (L1 + finetune baselines, the fidelity's finetunes) run in fp32: on an AVX2-only
# CPU bf16 is emulated and ~9x slower (benchmarks/results/precision_speed_avx2.md). 20% first: there the search
# has the best chance to beat uniform. Afterwards the results are rewritten in budget order (0.3, 0.2).
# Fidelity: 16 pool candidates (as for VGG-small) plus the six searches' winners; uniform and winners first.
# Also the supernet scored with the search re-scoring's calibration (40 train batches) and with 160 train batches.
# --replicates 3: uniform and the searches' candidates finetuned 3 times each (after every candidate once).
cd /work/main
W=benchmarks/work/resnet56
S=benchmarks/spaces/resnet56_low_streams.yaml
P=${PRECISION:-fp32}
.venv/bin/python benchmarks/layer_ratios.py --model resnet56 --space $S --work $W --targets 0.2 0.3 --seeds 0 1 2 \
    --precision $P --threads 2 || exit 1
.venv/bin/python benchmarks/layer_ratios.py --model resnet56 --space $S --work $W --targets 0.3 0.2 --seeds 0 1 2 \
    --precision $P --threads 2 --only-finished > /dev/null || exit 1
# 0.2 is finished, and its page also holds columns added by other commands (--also-supernet, --also-finetune:
# run_r56_near.sh, run_r56_ft.sh); rerunning it here without them would drop them, so only 0.3 runs.
for t in 0.3; do
  .venv/bin/python benchmarks/supernet_fidelity.py --model resnet56 --space $S --work $W --target $t \
      --candidates 16 --also-calibration train:40 train:160 --replicates 3 --precision $P --threads 2 || exit 1
done
