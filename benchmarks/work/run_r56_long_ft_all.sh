#!/bin/bash
# Pairs (winner, uniform) per seed, two 1-thread jobs side by side on the 2 cores.
cd /work/main
for s in 0 1; do
  bash benchmarks/work/run_r56_long_ft.sh winner-h0.3-s0 $s 1 &
  bash benchmarks/work/run_r56_long_ft.sh uniform $s 1 &
  wait
done
