#!/bin/bash
# Capacity: the server's resident memory for 1M and 10M users (rank 64,
# 20,000 segments), with float32 and int8 user factors, measured on models
# built from random factors with `starling import` (no training needed), and
# the bytes per user and per segment the model file takes. docs/CAPACITY.md
# has the figures and the projections. BENCH_CAPACITY_USERS overrides the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
S=./starling
OUT=bench/out/capacity
mkdir -p "$OUT"
SIZES=${BENCH_CAPACITY_USERS:-"1000000 10000000"}
K=64
SEGS=20000
echo "| users | user factors | model file MiB | bytes per user | server RSS MiB (file / anon) | RSS per user |"
echo "|---:|---|---:|---:|---:|---:|"
for users in $SIZES; do
    d="$OUT/u$users"
    bench/lib/random_models.sh "$d" "$users" "$SEGS" "$K"
    for kind in f32 i8; do
        model="$d/$kind.model"
        bytes=$(stat -c %s "$model")
        log="$d/serve-$kind.log"
        rm -f "$log"
        "$S" serve "$model" --port 0 --threads 2 --logfile "$log" &
        pid=$!
        for _ in $(seq 1 600); do grep -q "ready to accept" "$log" 2>/dev/null && break; sleep 0.1; done
        port=$(sed -n 's/.*ready to accept connections on tcp [^ ]*:\([0-9]*\).*/\1/p' "$log" | head -1)
        for u in 0 1 2 $((users / 2)) $((users - 1)); do
            redis-cli -p "$port" SEGMENTS "$(printf 'user-%09d' "$u")" COUNT 10 >/dev/null
        done
        rss=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)
        file=$(awk '/^RssFile/ {print $2}' /proc/$pid/status)
        anon=$(awk '/^RssAnon/ {print $2}' /proc/$pid/status)
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        awk -v u="$users" -v kind="$kind" -v b="$bytes" -v r="$rss" -v f="$file" -v a="$anon" 'BEGIN {
            printf "| %d | %s | %.0f | %.1f | %.0f (%.0f / %.0f) | %.1f |\n", u, kind == "f32" ? "float32" : "int8",
                b / 1048576, b / u, r / 1024, f / 1024, a / 1024, r * 1024 / u }'
    done
done
