#!/bin/bash
# starling serve with the standard Redis tools: redis-cli (one-shot, from
# stdin, over the Unix socket, and interactive in a terminal, where it asks
# COMMAND DOCS first), redis-benchmark (a short bounded run), and two
# servers behind twemproxy (nutcracker), which routes u:<user> keys by hash
# and forwards only commands it knows: ZREVRANGE and ZMSCORE.
. "$(dirname "$0")/lib.sh"
S=$STARLING
for tool in redis-cli redis-benchmark nutcracker tmux; do
    command -v "$tool" >/dev/null || skip_all "$tool is not installed (scripts/deps.sh test installs it)"
done
PIDS=()
TMUX_SOCKET="starling-test-$$"
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    tmux -L "$TMUX_SOCKET" kill-server 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

# start_server NAME ARGS...: starts starling serve on an ephemeral port,
# sets PORT_<NAME> and PID_<NAME>.
start_server() {
    name=$1; shift
    "$S" serve "$@" --port 0 --threads 2 --logfile "$T/$name.log" 2>"$T/$name.err" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 200); do
        port=$(grep -o 'tcp 127.0.0.1:[0-9]*' "$T/$name.log" 2>/dev/null | cut -d: -f2)
        [ -n "$port" ] && break
        sleep 0.05
    done
    eval "PORT_$name=$port PID_$name=$pid"
}

"$S" synth -o "$T/ev.csv" --users 2000 --segments 300 --events 40000 --seed 3 2>/dev/null
"$S" train "$T/ev.csv" -o "$T/m.model" --factors 16 --iterations 5 -q
start_server a "$T/m.model" --unixsocket "$T/a.sock"
P=$PORT_a
[ -n "$P" ]; ok $? "server started on an ephemeral port ($P)"

redis-cli -p "$P" PING | grep -qx PONG; ok $? "redis-cli PING"
U=u000123
redis-cli -p "$P" SEGMENTS $U COUNT 5 >"$T/seg"
[ "$(head -1 "$T/seg")" = model ] && [ "$(wc -l <"$T/seg")" -eq 11 ]; ok $? "redis-cli SEGMENTS: the source, then 5 segment/score pairs"
"$S" segments "$T/m.model" $U -k 5 | cut -f1 >"$T/cli"
sed -n '2~2p' "$T/seg" | cmp -s - "$T/cli"; ok $? "the same segments as 'starling segments'"
redis-cli -s "$T/a.sock" SCORE $U "$(head -1 "$T/cli")" | sed -n 2p >"$T/sc"
[ "$(cat "$T/sc")" = "$(sed -n 3p "$T/seg")" ]; ok $? "redis-cli over the Unix socket: SCORE equals the SEGMENTS score"
printf 'PING\nECHO "two words"\nSEGMENTS nobody COUNT 1\n' | redis-cli -p "$P" >"$T/stdin"
[ "$(tr '\n' '|' <"$T/stdin")" = "PONG|two words|prior|$(redis-cli -p "$P" SEGMENTS nobody COUNT 1 | sed -n 2p)|$(redis-cli -p "$P" SEGMENTS nobody COUNT 1 | sed -n 3p)|" ]
ok $? "redis-cli reading commands from stdin; an unknown user is marked 'prior'"
redis-cli -p "$P" HELLO 4 2>&1 | grep -q NOPROTO; ok $? "redis-cli HELLO 4: NOPROTO"
[ "$(redis-cli -3 -p "$P" PING)" = PONG ]; ok $? "redis-cli -3 PING (HELLO 3)"
redis-cli -p "$P" NOSUCH a 2>&1 | grep -q "unknown command 'NOSUCH'"; ok $? "redis-cli: unknown command named"
redis-cli -p "$P" INFO server | grep -q "^starling_version:"; ok $? "redis-cli INFO server"

# Interactive redis-cli in a terminal: it sends COMMAND DOCS at start.
tmux -L "$TMUX_SOCKET" new-session -d -x 120 -y 30 "redis-cli -p $P"
for _ in $(seq 50); do tmux -L "$TMUX_SOCKET" capture-pane -p | grep -q "127.0.0.1:$P>" && break; sleep 0.1; done
tmux -L "$TMUX_SOCKET" send-keys "SEGMENTS $U COUNT 2" Enter
for _ in $(seq 50); do tmux -L "$TMUX_SOCKET" capture-pane -p | grep -q '4) "' && break; sleep 0.1; done
tmux -L "$TMUX_SOCKET" capture-pane -p >"$T/screen"
grep -q '^1) model' "$T/screen" && grep -q "2) 1) \"$(head -1 "$T/cli")\"" "$T/screen"
ok $? "interactive redis-cli shows the nested reply"
tmux -L "$TMUX_SOCKET" send-keys "quit" Enter
redis-cli -p "$P" INFO commandstats >"$T/cs"
grep -q '^cmdstat_command|docs:calls=[1-9][0-9]*,.*failed_calls=0' "$T/cs"; ok $? "it asked COMMAND DOCS, which answered"
grep -q cmdstat_command "$T/cs" || cat "$T/cs" | sed 's/^/#   /'

# redis-benchmark, briefly (bench/serve.sh measures properly).
timeout 60 redis-benchmark -p "$P" -c 4 -n 2000 -q SEGMENTS $U COUNT 10 >"$T/bench" 2>&1
grep -aq "requests per second" "$T/bench"; ok $? "redis-benchmark runs SEGMENTS"

# Two servers behind twemproxy.
start_server b "$T/m.model"
PROXY=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
STATS=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$T/nutcracker.yml" <<EOF
starling:
  listen: 127.0.0.1:$PROXY
  hash: fnv1a_64
  distribution: ketama
  redis: true
  timeout: 5000
  servers:
   - 127.0.0.1:$PORT_a:1 a
   - 127.0.0.1:$PORT_b:1 b
EOF
nutcracker -c "$T/nutcracker.yml" -s "$STATS" -a 127.0.0.1 -o "$T/nutcracker.log" -p "$T/nutcracker.pid" &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$PROXY" ZCARD u:$U 2>/dev/null | grep -qx 300 && break; sleep 0.05; done
same=0; total=0
for i in $(seq 1 40); do
    u=$(printf 'u%06d' $((i * 37)))
    via=$(redis-cli -p "$PROXY" ZREVRANGE "u:$u" 0 2 WITHSCORES)
    direct=$(redis-cli -p "$PORT_a" ZREVRANGE "u:$u" 0 2 WITHSCORES)
    total=$((total + 1))
    [ -n "$via" ] && [ "$via" = "$direct" ] && same=$((same + 1))
done
[ "$same" -eq 40 ]; ok $? "ZREVRANGE u:<user> through twemproxy: $same of $total as asked directly"
s1=$(sed -n 1p "$T/cli"); s2=$(sed -n 2p "$T/cli")
redis-cli -p "$PROXY" ZMSCORE "u:$U" "$s1" nosuch "$s2" >"$T/zm"
[ "$(sed -n 1p "$T/zm")" = "$(sed -n 3p "$T/seg")" ] && [ -z "$(sed -n 2p "$T/zm")" ]
ok $? "ZMSCORE through twemproxy: the scores, nil for a non-member"
ca=$(redis-cli -p "$PORT_a" INFO commandstats | grep -o 'cmdstat_zrevrange:calls=[0-9]*' | cut -d= -f2)
cb=$(redis-cli -p "$PORT_b" INFO commandstats | grep -o 'cmdstat_zrevrange:calls=[0-9]*' | cut -d= -f2)
# a answered its share through the proxy plus the 40 direct calls.
[ -n "$ca" ] && [ -n "$cb" ] && [ "$cb" -gt 0 ] && [ $((ca - 40)) -gt 0 ] && [ $((ca - 40 + cb)) -eq 40 ]
ok $? "twemproxy spread the users over both servers by key (a: $((${ca:-40} - 40)), b: ${cb:-0})"

kill -TERM "$PID_a" "$PID_b"
wait "$PID_a"; ra=$?
wait "$PID_b"; rb=$?
[ "$ra" -eq 0 ] && [ "$rb" -eq 0 ]; ok $? "both servers exit 0 on SIGTERM"
plan_done
