#!/bin/bash
# Issue 16: the sampling pipeline screened by a 200-step finetune (the fidelity benchmark's best signal, ft-cut-200),
# the chosen structure finetuned 6 epochs, against uniform / global L1 + 6 finetune epochs. ResNet-56, 20%.
cd /work/main
.venv/bin/python benchmarks/sampling_route.py --model resnet56 --space benchmarks/spaces/resnet56_low_streams.yaml \
    --work benchmarks/work/resnet56 --target 0.2 --seeds 0 1 2 --samples 16 --steps 200 --final-epochs 6 --threads 2
