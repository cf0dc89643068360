#!/bin/bash
# serve.sh: `starling serve` under redis-benchmark, beside a redis-server
# started in the same run on the same machine (the floor).
#
# Measures, with 50 clients, without pipelining and with -P 16:
#   redis-server GET and PING            (the floor)
#   starling PING, SCORE of 10 segments, SEGMENTS k=10 of 10,000 segments at rank 64
#   (one user every time, and a random one of the 20,000 each time)
# and prints requests per second, p50 and p99, and each figure's ratio to
# redis-server's GET in the same run; then each server's CPU time per request
# under -P 16 beside redis-server's per GET. Then the event loop alone: starling
# --threads 1 against a libuv server built from the same parser
# (bench/uv_ping.c), PING, same load; last, the pruned top-k under SEGMENTS
# alone (bench/segments_bench.c): CPU time per question, segments visited and
# scored.
#
# The machine is shared, so every measurement is repeated BENCH_REPEAT times
# (default 3), the repetitions interleaved across servers, and the median
# of each figure is reported.
#
# Environment: BENCH_N (requests per unpipelined run, default 100000; -P 16
# runs send 4x), BENCH_REPEAT, BENCH_OUT (bench/out), STARLING (the binary,
# default ./starling: another build to compare with), BASELINE (a second
# binary served side by side, its SEGMENTS runs interleaved with these: a
# before-and-after comparison under the same load). Every process started
# here is stopped by its pid; everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh bench
N=${BENCH_N:-100000}
REPEAT=${BENCH_REPEAT:-3}
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
S=${STARLING:-./starling}
[ -x "$S" ] || make -s
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

# The model: 10,000 segments at rank 64 (trained once, kept in $OUT). User
# ids have 12 digits (u000000000123), the form of redis-benchmark's
# __rand_int__, so that u__rand_int__ with -r 20000 names a random user of
# the model in every request.
MODEL=$OUT/bench-10k-r.model
if [ ! -s "$MODEL" ]; then
    echo "training the benchmark model (20,000 users x 10,000 segments, rank 64)..." >&2
    $S synth -o "$OUT/bench-events.csv.gz" --users 20000 --segments 10000 --events 1000000 --seed 42 2>/dev/null
    zcat "$OUT/bench-events.csv.gz" | sed 's/^u/u000000/' | gzip -1 >"$OUT/bench-events-r.csv.gz"
    $S train "$OUT/bench-events-r.csv.gz" -o "$MODEL" --factors 64 --iterations 5 --seed 42 -q
fi
USER_ID=$($S segments "$MODEL" u000000000123 -k 1 >/dev/null 2>&1 && echo u000000000123)
SEGS=$($S segments "$MODEL" "$USER_ID" -k 10 | cut -f1 | tr '\n' ' ')

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT" >/dev/null 2>&1 &
RPID=$!
PIDS+=($RPID)
SPORT=$(free_port)
$S serve "$MODEL" --port "$SPORT" --logfile "$OUT/serve.log" &
SPID=$!
PIDS+=($SPID)
# The same with one event loop: on a 2-core machine that also runs the
# benchmark client, fewer server threads can mean less preemption.
S1PORT=$(free_port)
$S serve "$MODEL" --port "$S1PORT" --threads 1 --logfile "$OUT/serve1.log" &
S1PID=$!
PIDS+=($S1PID)
BPORT=
if [ -n "${BASELINE:-}" ]; then
    BPORT=$(free_port)
    "$BASELINE" serve "$MODEL" --port "$BPORT" --logfile "$OUT/serve-baseline.log" &
    BPID=$!
    PIDS+=($BPID)
    wait_port "$BPORT"
fi
wait_port "$RPORT" && wait_port "$SPORT" && wait_port "$S1PORT"
redis-cli -p "$RPORT" SET key:__rand_int__ xxx >/dev/null
redis-benchmark -p "$RPORT" -n 10000 -r 100000 -q -t set >/dev/null 2>&1

# run LABEL PORT PIPELINE CMD...: prints "PIPELINE LABEL rps p50 p99".
run() {
    label=$1 port=$2 p=$3; shift 3
    n=$N; [ "$p" -gt 1 ] && n=$((N * 4))
    line=$(timeout 300 redis-benchmark -p "$port" -c 50 -n "$n" -P "$p" --csv "$@" 2>/dev/null | tail -1)
    # "test","rps","avg","min","p50","p95","p99","max"
    echo "$p $label $(echo "$line" | tr -d '"' | awk -F, '{print $2, $5, $7}')"
}

for rep in $(seq "$REPEAT"); do
    echo "serving benchmark, repetition $rep of $REPEAT..." >&2
    for p in 1 16; do
        run "redis-server_GET" "$RPORT" "$p" GET key:__rand_int__
        run "redis-server_PING" "$RPORT" "$p" PING
        run "starling_PING" "$SPORT" "$p" PING
        # shellcheck disable=SC2086
        run "starling_SCORE_10_segments" "$SPORT" "$p" SCORE "$USER_ID" $SEGS
        run "starling_SEGMENTS_k=10" "$SPORT" "$p" SEGMENTS "$USER_ID" COUNT 10
        run "starling_SEGMENTS_k=10,_random_users" "$SPORT" "$p" -r 20000 SEGMENTS u__rand_int__ COUNT 10
        if [ -n "$BPORT" ]; then
            run "baseline_SEGMENTS_k=10" "$BPORT" "$p" SEGMENTS "$USER_ID" COUNT 10
            run "baseline_SEGMENTS_k=10,_random_users" "$BPORT" "$p" -r 20000 SEGMENTS u__rand_int__ COUNT 10
        fi
        run "starling_SEGMENTS_k=10,_--threads_1" "$S1PORT" "$p" SEGMENTS "$USER_ID" COUNT 10
    done
done >"$OUT/serve.raw"

# The servers' CPU time per request under the same -P 16 load (user + system
# time of the whole process, every thread, from /proc): on a shared machine
# steadier than requests per second, which also carry the benchmark client's
# share of the two cores; redis-server's per GET is the floor.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_run() { # LABEL PID PORT CMD...: prints "LABEL ticks requests"
    label=$1 pid=$2 port=$3; shift 3
    n=$((N * 4))
    c0=$(cpu_ticks "$pid")
    timeout 300 redis-benchmark -p "$port" -c 50 -n "$n" -P 16 -q "$@" >/dev/null 2>&1
    echo "$label $(($(cpu_ticks "$pid") - c0)) $n"
}
for rep in $(seq "$REPEAT"); do
    echo "server CPU, repetition $rep of $REPEAT..." >&2
    cpu_run "redis-server_GET" "$RPID" "$RPORT" GET key:__rand_int__
    cpu_run "starling_SEGMENTS_k=10" "$SPID" "$SPORT" SEGMENTS "$USER_ID" COUNT 10
    cpu_run "starling_SEGMENTS_k=10,_random_users" "$SPID" "$SPORT" -r 20000 SEGMENTS u__rand_int__ COUNT 10
    if [ -n "$BPORT" ]; then
        cpu_run "baseline_SEGMENTS_k=10" "$BPID" "$BPORT" SEGMENTS "$USER_ID" COUNT 10
        cpu_run "baseline_SEGMENTS_k=10,_random_users" "$BPID" "$BPORT" -r 20000 SEGMENTS u__rand_int__ COUNT 10
    fi
done >"$OUT/serve.cpu"
redis-cli -p "$SPORT" INFO everything | tr -d '\r' | grep -E '^(cmdstat|latency_percentiles_usec)_(segments|score|ping):' >"$OUT/serve.info"
kill "$SPID"
wait "$SPID" 2>/dev/null || true

# The loop alone: starling --threads 1 against libuv, PING.
make -s build/libstarling.a
gcc -std=c11 -O3 -march=native -D_GNU_SOURCE -Isrc bench/uv_ping.c build/libstarling.a -o "$OUT/uv_ping" \
    -luv -llapacke -lopenblas -ljansson -lz -lpthread -lm
UPORT=$(free_port)
"$OUT/uv_ping" "$UPORT" 2>/dev/null &
UPID=$!
PIDS+=($UPID)
wait_port "$UPORT"
LOOP_REPEAT=$((REPEAT * 2)) # cheap runs, and the closest comparison: twice the repetitions
for rep in $(seq "$LOOP_REPEAT"); do
    echo "event-loop benchmark, repetition $rep of $LOOP_REPEAT..." >&2
    for p in 1 16; do
        run "libuv_PING_(1_loop)" "$UPORT" "$p" PING
        run "starling_PING_(1_loop)" "$S1PORT" "$p" PING
    done
done >"$OUT/loop.raw"

/usr/bin/python3 - "$OUT/serve.raw" "$OUT/loop.raw" "$OUT/serve.info" "$REPEAT" "$OUT/serve.cpu" "$(getconf CLK_TCK)" <<'EOF' | tee "$OUT/serve.md"
import statistics
import sys


def medians(path):
    """{pipeline: {label: (rps, p50, p99)}}, each the median over repetitions, in first-seen order."""
    runs = {}
    for line in open(path):
        p, label, rps, p50, p99 = line.split()
        runs.setdefault(p, {}).setdefault(label.replace("_", " "), []).append((float(rps), float(p50), float(p99)))
    return {p: {l: tuple(statistics.median(v[i] for v in vals) for i in range(3)) for l, vals in b.items()}
            for p, b in runs.items()}


serve, loop = medians(sys.argv[1]), medians(sys.argv[2])
print(f"redis-benchmark, 50 clients, same machine, same run; medians of {sys.argv[4]} interleaved repetitions.")
print("ratio = requests/s over redis-server's GET with the same pipelining.\n")
print("| command | pipeline | requests/s | p50 ms | p99 ms | ratio to GET |")
print("|---|---|---:|---:|---:|---:|")
for p, b in serve.items():
    get = b["redis-server GET"][0]
    for label, (rps, p50, p99) in b.items():
        print(f"| {label} | {'none' if p == '1' else '-P ' + p} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {rps / get:.2f}x |")
b = serve["1"]
seg, get, ping, rping = b["starling SEGMENTS k=10"], b["redis-server GET"], b["starling PING"], b["redis-server PING"]
print("\nTargets (without pipelining):")
for name in ("starling SEGMENTS k=10", "starling SEGMENTS k=10, --threads 1"):
    seg = b[name]
    print(f"- {name}: >= 0.5x GET with p99 < 1 ms: {seg[0] / get[0]:.2f}x, p99 {seg[2]:.3f} ms "
          f"(redis-server GET p99 {get[2]:.3f} ms): {'met' if seg[0] >= 0.5 * get[0] and seg[2] < 1 else 'NOT met'}")
print(f"- PING within 10% of redis-server's PING: {ping[0] / rping[0]:.2f}x: "
      f"{'met' if ping[0] >= 0.9 * rping[0] else 'NOT met'}")
if "16" in serve:
    b16 = serve["16"]
    print("\nTargets (-P 16):")
    for name in ("starling SEGMENTS k=10", "starling SEGMENTS k=10, random users"):
        if name in b16:
            r = b16[name][0] / b16["redis-server GET"][0]
            print(f"- {name}: >= 0.3x GET: {r:.2f}x: {'met' if r >= 0.3 else 'NOT met'}")
cpu = {}
for line in open(sys.argv[5]):
    label, ticks, n = line.split()
    cpu.setdefault(label.replace("_", " "), []).append(int(ticks) / int(sys.argv[6]) / int(n) * 1e6)
if cpu:
    floor = statistics.median(cpu["redis-server GET"])
    print(f"\nServer CPU time per request, -P 16 (user + system, all threads; medians of {sys.argv[4]}); "
          "ratio = redis-server's per GET over this one:\n")
    print("| command | us a request (median) | min | ratio |")
    print("|---|---:|---:|---:|")
    for label, v in cpu.items():
        print(f"| {label} | {statistics.median(v):.2f} | {min(v):.2f} | {floor / statistics.median(v):.2f}x |")
print("\nServer-side time per command (starling's INFO, over every run above):\n")
for line in open(sys.argv[3]):
    print(f"    {line.strip()}")
print(f"\nThe event loop alone, PING, one loop thread each, same parser and call path "
      f"(medians of {2 * int(sys.argv[4])} repetitions):\n")
print("| server | pipeline | requests/s | p50 ms | p99 ms |")
print("|---|---|---:|---:|---:|")
for p, b in loop.items():
    for label, (rps, p50, p99) in b.items():
        print(f"| {label} | {'none' if p == '1' else '-P ' + p} | {rps:,.0f} | {p50:.3f} | {p99:.3f} |")
EOF

# The kernel under SEGMENTS alone (bench/segments_bench.c), on the same model.
gcc -std=c11 -O3 -march=native -D_GNU_SOURCE -Isrc bench/segments_bench.c build/libstarling.a \
    -o "$OUT/segments_bench" -llapacke -lopenblas -ljansson -lz -lmd -lpthread -lm
{
    printf '\nThe pruned top-k under SEGMENTS alone (bench/segments_bench.c, src/segindex.c):\n\n'
    OPENBLAS_NUM_THREADS=1 "$OUT/segments_bench" "$MODEL"
} | tee -a "$OUT/serve.md"
