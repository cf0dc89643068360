#!/bin/bash
# journal.sh: EVENT throughput and latency under each appendfsync policy,
# beside redis-server's INCR under the same appendfsync in the same run.
#
# For each policy (always, everysec, no): a redis-server with --appendonly yes
# --appendfsync POLICY and a `starling serve --journal ... --appendfsync
# POLICY` on the serving benchmark's model (10,000 segments, rank 64), both
# with their files in bench/out; redis-benchmark with 50 clients, no
# pipelining, sends INCR counter:__rand_int__ to the one and
# EVENT u__rand_int__ SEGMENT 1 KIND click to the other (each EVENT creates or
# updates one of 100,000 users and re-solves their vector). Prints requests
# per second, p50 and p99, the ratio to INCR, and starling's own figures
# (server-side time per EVENT, fsyncs and writes per fsync). Then the hot
# path beside the overlay those writes built: SEGMENTS of a model user on a
# server without a journal, and on the everysec server (about 100,000
# online users: an overlay lookup that misses), and SEGMENTS of its online
# users (lookups that hit, vectors copied out).
#
# The machine is shared: every measurement is repeated BENCH_REPEAT times
# (default 3), the repetitions interleaved, and the median reported.
# Environment: BENCH_N (requests per everysec/no run, default 100000),
# BENCH_N_ALWAYS (per always run, default 20000), BENCH_REPEAT, BENCH_OUT.
# Every process started here is stopped by its pid; everything listens on
# 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh bench
N=${BENCH_N:-100000}
N_ALWAYS=${BENCH_N_ALWAYS:-20000}
REPEAT=${BENCH_REPEAT:-3}
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"
S=./starling
[ -x $S ] || make -s
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

# The serving benchmark's model (bench/serve.sh trains the same one).
MODEL=$OUT/bench-10k.model
if [ ! -s "$MODEL" ]; then
    echo "training the benchmark model (20,000 users x 10,000 segments, rank 64)..." >&2
    $S synth -o "$OUT/bench-events.csv.gz" --users 20000 --segments 10000 --events 1000000 --seed 42 2>/dev/null
    $S train "$OUT/bench-events.csv.gz" -o "$MODEL" --factors 64 --iterations 5 --seed 42 -q
fi
SEG=$($S segments "$MODEL" u000123 -k 1 | cut -f1)

declare -A RPORT SPORT SPID
for p in always everysec no; do
    rm -rf "$OUT/redis-aof-$p" "$OUT/journal-$p.journal"
    mkdir -p "$OUT/redis-aof-$p"
    RPORT[$p]=$(free_port)
    redis-server --port "${RPORT[$p]}" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync "$p" \
        --dir "$OUT/redis-aof-$p" >/dev/null 2>&1 &
    PIDS+=($!)
    SPORT[$p]=$(free_port)
    $S serve "$MODEL" --port "${SPORT[$p]}" --journal "$OUT/journal-$p.journal" --appendfsync "$p" \
        --logfile "$OUT/serve-journal-$p.log" &
    SPID[$p]=$!
    PIDS+=(${SPID[$p]})
done
PPORT=$(free_port)
$S serve "$MODEL" --port "$PPORT" --logfile "$OUT/serve-plain.log" &
PIDS+=($!)
for p in always everysec no; do wait_port "${RPORT[$p]}" && wait_port "${SPORT[$p]}"; done
wait_port "$PPORT"

# run LABEL POLICY PORT N CMD...: prints "POLICY LABEL rps p50 p99".
run() {
    label=$1 policy=$2 port=$3 n=$4; shift 4
    line=$(timeout 600 redis-benchmark -p "$port" -c 50 -n "$n" -r 100000 --csv "$@" 2>/dev/null | tail -1)
    # "test","rps","avg","min","p50","p95","p99","max"
    echo "$policy $label $(echo "$line" | tr -d '"' | awk -F, '{print $2, $5, $7}')"
}

for rep in $(seq "$REPEAT"); do
    echo "journal benchmark, repetition $rep of $REPEAT..." >&2
    for p in always everysec no; do
        n=$N; [ "$p" = always ] && n=$N_ALWAYS
        run "redis-server_INCR" "$p" "${RPORT[$p]}" "$n" INCR counter:__rand_int__
        run "starling_EVENT" "$p" "${SPORT[$p]}" "$n" EVENT u__rand_int__ "$SEG" 1 KIND click
    done
done >"$OUT/journal.raw"
for rep in $(seq "$REPEAT"); do
    echo "hot-path benchmark, repetition $rep of $REPEAT..." >&2
    run "SEGMENTS_model_user,_no_journal" hot "$PPORT" "$N" SEGMENTS u000123 COUNT 10
    run "SEGMENTS_model_user,_100k_online_users" hot "${SPORT[everysec]}" "$N" SEGMENTS u000123 COUNT 10
    run "SEGMENTS_online_users" hot "${SPORT[everysec]}" "$N" SEGMENTS u__rand_int__ COUNT 10
done >"$OUT/journal-hot.raw"
for p in always everysec no; do
    {
        echo "policy $p"
        redis-cli -p "${SPORT[$p]}" INFO everything | tr -d '\r' |
            grep -E '^(cmdstat_event|latency_percentiles_usec_event|journal_(appends|fsyncs|last_fsync_usec|bytes)|online_users):'
    } >>"$OUT/journal.info.tmp"
done
mv "$OUT/journal.info.tmp" "$OUT/journal.info"

/usr/bin/python3 - "$OUT/journal.raw" "$OUT/journal.info" "$REPEAT" "$OUT/journal-hot.raw" <<'EOF' | tee "$OUT/journal.md"
import statistics
import sys

runs = {}
for line in open(sys.argv[1]):
    p, label, rps, p50, p99 = line.split()
    runs.setdefault(p, {}).setdefault(label.replace("_", " "), []).append((float(rps), float(p50), float(p99)))
info, cur = {}, None
for line in open(sys.argv[2]):
    line = line.strip()
    if line.startswith("policy "):
        cur = line.split()[1]
        info[cur] = {}
    elif ":" in line:
        k, v = line.split(":", 1)
        info[cur][k] = v
print(f"redis-benchmark, 50 clients, no pipelining, same machine, same run; medians of {sys.argv[3]} "
      "interleaved repetitions.")
print("Each starling EVENT creates or updates one of 100,000 users and re-solves their vector (rank 64, "
      "10,000 segments).\n")
print("| appendfsync | command | requests/s | p50 ms | p99 ms | ratio to INCR |")
print("|---|---|---:|---:|---:|---:|")
for p, b in runs.items():
    med = {l: tuple(statistics.median(v[i] for v in vals) for i in range(3)) for l, vals in b.items()}
    incr = med["redis-server INCR"][0]
    for label, (rps, p50, p99) in med.items():
        print(f"| {p} | {label} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {rps / incr:.2f}x |")
print("\nstarling's own figures over every run above (INFO):\n")
for p, d in info.items():
    appends, fsyncs = int(d.get("journal_appends", 0)), int(d.get("journal_fsyncs", 0))
    per = f"{appends / fsyncs:.1f} writes per fsync" if fsyncs else "no fsync in the request path"
    print(f"- {p}: {d.get('cmdstat_event', '')}; {d.get('latency_percentiles_usec_event', '')}; "
          f"{appends} writes, {fsyncs} fsyncs ({per}); last fsync {d.get('journal_last_fsync_usec', '?')} us; "
          f"{d.get('online_users', '?')} online users")
hot = {}
for line in open(sys.argv[4]):
    _, label, rps, p50, p99 = line.split()
    hot.setdefault(label.replace("_", " "), []).append((float(rps), float(p50), float(p99)))
print("\nThe hot path beside the overlay (same clients, no pipelining):\n")
print("| command | requests/s | p50 ms | p99 ms |")
print("|---|---:|---:|---:|")
for label, vals in hot.items():
    rps, p50, p99 = (statistics.median(v[i] for v in vals) for i in range(3))
    print(f"| {label} | {rps:,.0f} | {p50:.3f} | {p99:.3f} |")
EOF
