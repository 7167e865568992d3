#!/bin/bash
# Issue 16: is it the in-place distillation that equalises the structures' supernet scores? A ResNet-56 supernet
# from the same converged dense model with the first one's recipe (6 epochs, lr 0.02 cosine, 2 random + smallest
# + largest, bf16) but every sub-network trained on the labels (--teacher none), scored on the same 19 fidelity
# candidates at 20% (page fidelity_resnet56_0.2_labels), then the default search (3 seeds) over it.
# Resumable: rerun to continue (finished epochs and searches are kept). bf16: this CPU has AVX512-BF16.
cd /work/main
W=benchmarks/work/resnet56
S=benchmarks/spaces/resnet56_low_streams.yaml
.venv/bin/python -m autoprune supernet --model resnet56 --dataset fashion-mnist --data-dir /tmp/autoprune-fmnist \
    --checkpoint $W/dense-check2/model.pt --space $S --supernet-epochs 6 --lr 0.02 --teacher none --precision bf16 \
    --threads 2 --out $W/supernet-labels --no-progress || exit 1
.venv/bin/python benchmarks/supernet_fidelity.py --model resnet56 --space $S --work $W --target 0.2 \
    --candidates 16 --replicates 3 --precision fp32 --threads 2 --name fidelity_resnet56_0.2_labels \
    --also labels=$W/supernet-labels/supernet.pt || exit 1
[ -n "$NO_SEARCH" ] && exit 0
.venv/bin/python benchmarks/layer_ratios.py --model resnet56 --space $S --work $W --targets 0.2 --seeds ${SEEDS:-0 1 2} \
    --precision fp32 --threads 2 --supernet-stage supernet-labels || exit 1
