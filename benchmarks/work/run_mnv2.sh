#!/bin/bash
# Issue 16's third model: the built-in MobileNetV2 (very unequal layers: the expanded channels hold most of the
# MACs) on Fashion-MNIST, over benchmarks/spaces/mobilenetv2_low.yaml, at 30% and 20% of the MACs, 3 search seeds each.
# Stages as for ResNet-56 (benchmarks/layer_ratios.py): dense model trained to convergence (20 epochs, then 5-epoch
# checks), the supernet, the searches, the L1 + finetune baselines. Resumable: rerun to continue (finished stages
# are read; `autoprune train` and `autoprune supernet` continue after their last finished epoch).
# PRECISION: bf16 where the CPU has AVX512-BF16/AMX (see benchmarks/results/precision_speed*.md), else fp32;
# a stage keeps the precision it started with.
cd /work/main
P=${PRECISION:-bf16}
.venv/bin/python benchmarks/layer_ratios.py --model mobilenetv2 --work benchmarks/work/mobilenetv2 \
    --space benchmarks/spaces/mobilenetv2_low.yaml \
    --targets 0.2 0.3 --seeds 0 1 2 --precision $P --threads 2 || exit 1
