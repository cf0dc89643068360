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
    mkdir -p "$d"
    if [ ! -s "$d/f32.model" ]; then
        /usr/bin/python3 - "$d" "$users" "$SEGS" "$K" <<'PY'
import sys, numpy as np
d, m, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(1)
np.save(f"{d}/u.npy", (rng.standard_normal((m, k), dtype=np.float32) * 0.1))
np.save(f"{d}/v.npy", (rng.standard_normal((n, k), dtype=np.float32) * 0.1))
with open(f"{d}/u.txt", "w") as f:
    f.write("".join(f"user-{i:09d}\n" for i in range(m)))
with open(f"{d}/v.txt", "w") as f:
    f.write("".join(f"segment-{i:06d}\n" for i in range(n)))
PY
        "$S" import --user-factors "$d/u.npy" --user-ids "$d/u.txt" --segment-factors "$d/v.npy" \
            --segment-ids "$d/v.txt" -o "$d/f32.model"
        "$S" quantize "$d/f32.model" -o "$d/i8.model"
        rm -f "$d/u.npy" "$d/v.npy"
    fi
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
