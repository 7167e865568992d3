#!/bin/bash
# Issue 16: one more finetuning seed of the structure_long_ft comparison: winner-h0.3-s0 and the space's uniform
# candidate (run_r56_long_ft.sh), then uniform and global L1 (run_r56_l1_seed.sh), two 1-thread runs side by
# side on 2 cores. Usage: run_r56_long_ft_seed.sh SEED. Rerun to continue (finished runs are kept).
cd /work/main
S=$1
W=benchmarks/work/resnet56
[ -f $W/keep-winner-h0.3-s0-ft6-s$S/report.json ] || bash benchmarks/work/run_r56_long_ft.sh winner-h0.3-s0 $S 1 &
[ -f $W/keep-uniform-ft6-s$S/report.json ] || bash benchmarks/work/run_r56_long_ft.sh uniform $S 1 &
wait
[ -f $W/l1-local-0.2-s$S/report.json ] || bash benchmarks/work/run_r56_l1_seed.sh local $S 1 &
[ -f $W/l1-global-0.2-s$S/report.json ] || bash benchmarks/work/run_r56_l1_seed.sh global $S 1 &
wait
