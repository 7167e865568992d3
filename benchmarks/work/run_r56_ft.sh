#!/bin/bash
# Issue 16: does a short finetune rank the 19 ResNet-56 fidelity candidates at 20% better than the shared
# weights alone? Scores ft-supernet-200 and ft-cut-200 on the same candidates and ground truth. Resumable.
cd /work/main
W=benchmarks/work/resnet56
S=benchmarks/spaces/resnet56_low_streams.yaml
.venv/bin/python benchmarks/supernet_fidelity.py --model resnet56 --space $S --work $W --target 0.2 \
    --candidates 16 --also-calibration train:40 train:160 --replicates 3 --precision fp32 --threads 2 \
    --also near0.2=$W/supernet-near0.2/supernet.pt near0.2b=$W/supernet-near0.2b/supernet.pt \
    --also-finetune supernet:200 cut:200
