#!/bin/bash
# Distributed training on this host: seconds per iteration for 1 process and
# for 2 MPI ranks (mpirun on loopback, shared memory), on the synthetic 5M-pair
# set at k = 64, and the bytes of factor rows exchanged per iteration against
# the formula in docs/SCALING.md. Two ranks on a 2-core machine split the same
# cores: this measures the overhead of distribution, not a speed-up.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v mpirun >/dev/null || { echo "mpirun is not installed (openmpi-bin): skipped"; exit 0; }
S=./starling
DATA=bench/out/data
mkdir -p "$DATA"
PAIRS=${BENCH_MPI_PAIRS:-5000000}
f="$DATA/pairs-$PAIRS.csv"
[ -s "$f" ] || "$S" synth --pairs -o "$f" --users $((PAIRS / 50)) --segments $((PAIRS / 250)) --events "$PAIRS" \
    --seed 1 2>/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
spi() { awk '/^trained / { for (i = 2; i <= NF; i++) if ($i ~ /^s\/iteration/) { v = $(i-1); sub(/^\(/, "", v); print v } }'; }
one=$("$S" train "$f" -o bench/out/mpi.model --factors 64 --iterations 5 --threads 2 2>&1 | spi)
log=$(mpirun --oversubscribe -np 2 "$S" train "$f" -o bench/out/mpi.model --factors 64 --iterations 5 2>&1)
two=$(echo "$log" | spi)
traffic=$(echo "$log" | grep '^MPI:' || true)
echo "| processes | threads each | s/iteration |"
echo "|---:|---:|---:|"
echo "| 1 | 2 | $one |"
echo "| 2 (mpirun) | 1 | $two |"
echo
echo "$traffic"
rm -f bench/out/mpi.model
