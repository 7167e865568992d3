#!/bin/bash
# ResNet-56 on Fashion-MNIST, bf16 training (issue 16's second model). Resumable: rerun to continue.
cd /work/main
W=benchmarks/work/resnet56
S=benchmarks/spaces/resnet56_low_streams.yaml
.venv/bin/python benchmarks/layer_ratios.py --model resnet56 --space $S --work $W --targets 0.3 0.2 --seeds 0 1 2 \
    --precision bf16 --threads 2 || exit 1
for t in 0.3 0.2; do
  .venv/bin/python benchmarks/supernet_fidelity.py --model resnet56 --space $S --work $W --target $t \
      --precision bf16 --threads 2 || exit 1
done
