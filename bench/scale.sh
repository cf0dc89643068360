#!/bin/bash
# Scale: the scans over every user (AUDIENCE top 1,000, LOOKALIKE of 100
# seeds, REACH, the reach curve of 26 thresholds) at 1M, 4M and 10M users,
# rank 64, 10,000 segments, float32 and int8 user factors, each beside the
# streaming-read floor of the bytes it scans, measured in the same run on the
# same threads (bench/scan_bench.c). Models are built from random factors
# with `starling import` (a scan's cost does not depend on the values) and
# kept in bench/out/scale/ for the next run. BENCH_SCALE_USERS overrides the
# sizes, BENCH_THREADS the threads (default: every CPU), BENCH_REPEAT the
# repetitions (default 9). bench/README.md explains the columns.
# Then the approximate AUDIENCE (bench/ann_bench.c) on trained factors:
# BENCH_APPROX_USERS users (default 1000000; 0 skips it), rank 64, 10,000
# segments, `starling synth --pairs` (20 pairs a user) then `starling train`
# (kept in bench/out/scale/trained-u*), beside the exact float32 scan and the
# read floor, with recall@1,000; BENCH_APPROX_QUERIES segments (default 20).
# BENCH_SCALE_USERS=0 runs this part alone.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/scale
mkdir -p "$OUT"
make -s starling build/libstarling.a
for b in scan_bench ann_bench; do
    gcc -std=c11 -O3 -march=native -D_GNU_SOURCE -Isrc -o "$OUT/$b" "bench/$b.c" build/libstarling.a \
        -llapacke -lopenblas -ljansson -lz -lmd -lpthread -lm
done
SIZES=${BENCH_SCALE_USERS:-"1000000 4000000 10000000"}
THREADS=${BENCH_THREADS:-$(nproc)}
REPEAT=${BENCH_REPEAT:-9}
K=64
SEGS=10000
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"\
     "load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
for users in $SIZES; do
    [ "$users" = 0 ] && continue # BENCH_SCALE_USERS=0: the approximate index alone
    d="$OUT/u$users"
    bench/lib/random_models.sh "$d" "$users" "$SEGS" "$K"
    for kind in f32 i8; do
        echo
        "$OUT/scan_bench" "$d/$kind.model" "$THREADS" "$REPEAT"
    done
done
APPROX_USERS=${BENCH_APPROX_USERS:-1000000}
if [ "$APPROX_USERS" != 0 ]; then
    d="$OUT/trained-u$APPROX_USERS"
    mkdir -p "$d"
    if [ ! -s "$d/f32.model" ]; then
        t0=$(date +%s)
        ./starling synth -o "$d/pairs.csv" --pairs --users "$APPROX_USERS" --segments "$SEGS" \
            --events $((20 * APPROX_USERS)) --seed 7
        ./starling train "$d/pairs.csv" -o "$d/f32.model" --factors "$K" --iterations 5 --seed 7 -q
        rm -f "$d/pairs.csv"
        echo "trained model of $APPROX_USERS users made in $(( $(date +%s) - t0 )) s"
    fi
    echo
    "$OUT/ann_bench" "$d/f32.model" "$THREADS" "${BENCH_APPROX_QUERIES:-20}"
fi
echo
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
