#!/usr/bin/python3
"""Sharded serving: two and three starling shards behind a real nutcracker
answer every user exactly as one unsharded server does.

The model is split with `starling shard`; one `starling serve` per shard
and a nutcracker with the generated nutcracker.yml (only ports changed) are
started on loopback; every user's ZREVRANGE u:<user> 0 9 WITHSCORES and a
ZMSCORE of three segments through the proxy must equal the unsharded
server's reply, byte for byte. Unknown users too (every shard has the prior).
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from serve import Server, free_port, make_model, nutcracker_config, wait_port  # noqa: E402
from starling import Model  # noqa: E402
from tap import done, ok, skip_all, starling  # noqa: E402

try:
    import redis
except ImportError:
    redis = None
if redis is None or not shutil.which("nutcracker"):
    skip_all("needs python3-redis and nutcracker (Debian packages)")


with tempfile.TemporaryDirectory() as d:
    model, _ = make_model(d, users=1500, segments=200, events=30000, seed=7)
    m = Model(model)
    users = m.user_ids.tolist() + ["nobody-at-all", "ünknown"]
    segs = [m.segment_ids[0], m.segment_ids[7], "no-such-segment"]
    whole = Server(model, d=d)
    direct = redis.Redis(host="127.0.0.1", port=whole.port)
    want_range = {u: direct.execute_command("ZREVRANGE", f"u:{u}", 0, 9, "WITHSCORES") for u in users}
    want_ms = {u: direct.execute_command("ZMSCORE", f"u:{u}", *segs) for u in users}
    for n in (2, 3):
        out = os.path.join(d, f"shards{n}")
        starling("shard", model, "--shards", n, "-o", out)
        servers = [Server(os.path.join(out, f"shard-{i}.model"), d=d) for i in range(n)]
        conf, proxy_port = nutcracker_config(out, [s.port for s in servers])
        proxy = subprocess.Popen(["nutcracker", "-c", conf, "-s", str(free_port())],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ok(wait_port(proxy_port), f"{n} shards: nutcracker is up")
            c = redis.Redis(host="127.0.0.1", port=proxy_port)
            bad_range = [u for u in users if c.execute_command("ZREVRANGE", f"u:{u}", 0, 9, "WITHSCORES")
                         != want_range[u]]
            ok(not bad_range, f"{n} shards: ZREVRANGE of all {len(users)} users through nutcracker equals the "
               f"unsharded server" + (f" (differs: {bad_range[:3]})" if bad_range else ""))
            bad_ms = [u for u in users if c.execute_command("ZMSCORE", f"u:{u}", *segs) != want_ms[u]]
            ok(not bad_ms, f"{n} shards: ZMSCORE of every user equals the unsharded server")
            # Each user is answered by the shard that holds it.
            owners = {}
            for i in range(n):
                for u in Model(os.path.join(out, f"shard-{i}.model")).user_ids:
                    owners[u] = i
            ok(len(owners) == len(m.user_ids), f"{n} shards: every user is in exactly one shard")
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)
            for s in servers:
                s.stop()
    whole.stop()
done()
