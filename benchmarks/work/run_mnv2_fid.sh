#!/bin/bash
# Issue 16's ranking fidelity on MobileNetV2 (after run_mnv2.sh has finished: it needs the supernet and the
# searches' winners). As for ResNet-56 (run_r56b.sh): 16 pool candidates plus the searches' winners, uniform and
# winners finetuned first, then 3 replicates of those. 20% first (the budget where allocation matters most).
# Resumable: rerun to continue (finished candidates are read from WORK/fidelity-TARGET*.jsonl).
cd /work/main
W=benchmarks/work/mobilenetv2
S=benchmarks/spaces/mobilenetv2_low.yaml
P=${PRECISION:-bf16}
for t in 0.2 0.3; do
  .venv/bin/python benchmarks/supernet_fidelity.py --model mobilenetv2 --space $S --work $W --target $t \
      --candidates 16 --replicates 3 --precision $P --threads 2 || exit 1
done
