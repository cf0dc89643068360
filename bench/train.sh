#!/bin/bash
# Training speed and memory: seconds per ALS iteration for CG and Cholesky at
# k = 32, 64, 128 on synthetic sets of 1M, 5M and 20M (user, segment, count)
# pairs (users = pairs / 50, segments = pairs / 250: the shape of the common
# 100k x 20k x 5M benchmark set at 5M) and on Last.fm 2K, each beside this
# machine's floors measured in the same run. How to read it: bench/README.md.
#
# Environment: BENCH_SIZES (default "1000000 5000000 20000000"), BENCH_RANKS
# (default "32 64 128"), BENCH_THREADS (default 2), BENCH_CG_ITERS (5),
# BENCH_CHOL_ITERS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
S=./starling
OUT=bench/out
DATA=$OUT/data
mkdir -p "$DATA"
SIZES=${BENCH_SIZES:-"1000000 5000000 20000000"}
RANKS=${BENCH_RANKS:-"32 64 128"}
THREADS=${BENCH_THREADS:-2}
CG_ITERS=${BENCH_CG_ITERS:-5}
CHOL_ITERS=${BENCH_CHOL_ITERS:-2}
LASTFM=../shared/data/lastfm-2k/user_artists.dat

make -s build/bench/floors >/dev/null
read -r _ SGEMM < <(build/bench/floors "$THREADS" | tee "$OUT/floors.txt" | grep sgemm_gflops)
READBW=$(awk '$1 == "read_gbps" {print $2}' "$OUT/floors.txt")
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads"
echo "floors (same run): sgemm $SGEMM GFLOP/s, streaming read $READBW GB/s, memcpy $(awk '$1 == "memcpy_gbps" {print $2}' "$OUT/floors.txt") GB/s"
echo
printf '| data | users | segments | nnz | k | solver | s/iter | ns/nnz | nnz*k/s (M) | GFLOP/s | x compute floor | x bytes floor | peak RSS MiB | RSS / (CSR+CSC+factors) |\n'
printf '|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'

run() { # run NAME FILE K SOLVER ITERS
    local name=$1 file=$2 k=$3 solver=$4 iters=$5 log
    log=$("$S" train "$file" -o "$OUT/bench.model" --factors "$k" --iterations "$iters" --solver "$solver" \
        --threads "$THREADS" --seed 1 2>&1)
    echo "$log" | awk -v name="$name" -v k="$k" -v solver="$solver" -v sgemm="$SGEMM" -v bw="$READBW" '
        /^read / { for (i = 1; i <= NF; i++) { if ($i == "users,") m = $(i-1); if ($i == "segments,") n = $(i-1); if ($i == "distinct") nnz = $(i-1) } }
        /^trained / { for (i = 2; i <= NF; i++) if ($i ~ /^s\/iteration/) { spi = $(i-1); sub(/^\(/, "", spi) } }
        /peak RSS/ { for (i = 1; i <= NF; i++) if ($i == "RSS") { rss = $(i+1); ratio = $(i+3); sub(/^\(/, "", ratio); sub(/x$/, "", ratio) } }
        END {
            s = 3
            if (solver == "cg")
                flops = k*k*(m+n)*(1 + 2*(1+s)) + 8*k*(1+s)*nnz + 2*k*nnz + k*k*n
            else
                flops = 2*k*k*nnz + (m+n)*(k*k*k/3 + 4*k*k) + 2*k*k*(m+n) + 4*k*nnz
            bytes = 2*nnz*(8 + 4*k) + (m+n)*(8*k + 8)
            tf = flops / (sgemm * 1e9); tb = bytes / (bw * 1e9)
            printf "| %s | %d | %d | %d | %d | %s | %.3f | %.1f | %.0f | %.1f | %.2f | %.2f | %.0f | %.2f |\n", \
                name, m, n, nnz, k, solver, spi, spi / nnz * 1e9, nnz * k / spi / 1e6, flops / spi / 1e9, \
                spi / tf, spi / tb, rss, ratio
        }'
}

for pairs in $SIZES; do
    f="$DATA/pairs-$pairs.csv.gz"
    [ -s "$f" ] || "$S" synth --pairs -o "$f" --users $((pairs / 50)) --segments $((pairs / 250)) \
        --events "$pairs" --seed 1 2>/dev/null
    for k in $RANKS; do
        run "synth $((pairs / 1000000))M" "$f" "$k" cg "$CG_ITERS"
        run "synth $((pairs / 1000000))M" "$f" "$k" cholesky "$CHOL_ITERS"
    done
done
if [ -f "$LASTFM" ]; then
    for k in $RANKS; do
        run "lastfm-2k" "$LASTFM" "$k" cg "$CG_ITERS"
        run "lastfm-2k" "$LASTFM" "$k" cholesky "$CHOL_ITERS"
    done
else
    echo "(lastfm-2k skipped: $LASTFM is absent)"
fi
rm -f "$OUT/bench.model"
