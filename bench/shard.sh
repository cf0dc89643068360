#!/bin/bash
# The proxy's overhead: the SEGMENTS view (ZREVRANGE u:<user> 0 9 WITHSCORES)
# asked of one starling server directly and through nutcracker in front of it
# (one shard, the nutcracker.yml `starling shard` writes), 50 clients, with
# and without pipelining, in the same run; and redis-server's GET the same
# two ways, for scale. Requires redis-tools and nutcracker.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nutcracker >/dev/null && command -v redis-benchmark >/dev/null ||
    { echo "nutcracker or redis-benchmark is not installed: skipped"; exit 0; }
S=./starling
OUT=bench/out/shard
mkdir -p "$OUT"
[ -s models/default.model ] || scripts/demo.sh >/dev/null
"$S" shard models/default.model --shards 1 -o "$OUT" >/dev/null
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sp=$(free_port); rp=$(free_port); pp=$(free_port); pr=$(free_port)
"$S" serve "$OUT/shard-0.model" --port "$sp" --threads 2 --logfile "$OUT/serve.log" & spid=$!
redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & rpid=$!
sed -e "s/listen: 127.0.0.1:[0-9]*/listen: 127.0.0.1:$pp/" -e "s/127.0.0.1:[0-9]*:1 shard0/127.0.0.1:$sp:1 shard0/" \
    "$OUT/nutcracker.yml" > "$OUT/run.yml"
printf 'redis:\n  listen: 127.0.0.1:%s\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  servers:\n   - 127.0.0.1:%s:1 r0\n' \
    "$pr" "$rp" > "$OUT/redis.yml"
nutcracker -c "$OUT/run.yml" -s "$(free_port)" >/dev/null 2>&1 & n1=$!
nutcracker -c "$OUT/redis.yml" -s "$(free_port)" >/dev/null 2>&1 & n2=$!
trap 'kill $spid $rpid $n1 $n2 2>/dev/null || true' EXIT
sleep 1
redis-cli -p "$rp" SET k v >/dev/null
U=u000015
bench() { # bench PORT PIPELINE ARGS...
    local port=$1 p=$2; shift 2
    timeout 120 redis-benchmark -p "$port" -c 50 -n 100000 -P "$p" -q --csv "$@" 2>/dev/null | tail -1 |
        awk -F, '{ gsub(/"/, ""); print $2, $7 }'
}
echo "| request | path | pipeline | req/s | p99 ms |"
echo "|---|---|---:|---:|---:|"
for p in 1 16; do
    for path in direct nutcracker; do
        port=$sp; [ $path = nutcracker ] && port=$pp
        read -r rps p99 < <(bench "$port" "$p" ZREVRANGE "u:$U" 0 9 WITHSCORES)
        echo "| starling ZREVRANGE u:$U 0 9 WITHSCORES | $path | $p | $rps | $p99 |"
        port=$rp; [ $path = nutcracker ] && port=$pr
        read -r rps p99 < <(bench "$port" "$p" GET k)
        echo "| redis-server GET | $path | $p | $rps | $p99 |"
    done
done
