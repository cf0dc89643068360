#!/usr/bin/python3
"""Online writes behind twemproxy: ZINCRBY u:<user> and DEL u:<user> are keyed
commands, so a real nutcracker routes them to the shard that holds the user
(the one `starling shard` put them in); each shard journals its own users.
EVENT and FORGET are not commands twemproxy knows, which is why the
sorted-set forms exist.
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
    out = os.path.join(d, "shards")
    starling("shard", model, "--shards", 2, "-o", out)
    owners = {}
    for i in range(2):
        for u in Model(os.path.join(out, f"shard-{i}.model")).user_ids:
            owners[u] = i
    servers = [Server(os.path.join(out, f"shard-{i}.model"), "--journal", os.path.join(out, f"j{i}.journal"),
                      "--appendfsync", "always", d=d) for i in range(2)]
    conf, proxy_port = nutcracker_config(out, [s.port for s in servers])
    proxy = subprocess.Popen(["nutcracker", "-c", conf, "-s", str(free_port())],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ok(wait_port(proxy_port), "nutcracker is up in front of two shards with journals")
        c = redis.Redis(host="127.0.0.1", port=proxy_port, decode_responses=True)
        direct = [redis.Redis(host="127.0.0.1", port=s.port, decode_responses=True) for s in servers]
        seg = m.segment_ids[3]
        users = [u for u in m.user_ids if owners[u] == 0][:20] + [u for u in m.user_ids if owners[u] == 1][:20]
        gone = users[:5] + users[20:25]
        scores = {u: c.execute_command("ZINCRBY", f"u:{u}", 2, seg) for u in users}
        placed = [u for u in users if direct[owners[u]].execute_command("HISTORY", u)[0] == "online"
                  and direct[1 - owners[u]].execute_command("HISTORY", u)[0] == "none"]
        ok(len(placed) == 40, f"ZINCRBY through nutcracker reached the shard holding each user ({len(placed)} of 40)")
        ok(all(scores[u] == c.execute_command("ZSCORE", f"u:{u}", seg) for u in users),
           "its reply is the user's new score, as ZSCORE through the proxy reads it")
        ok(c.execute_command("DEL", *[f"u:{u}" for u in gone[:1]]) == 1 and
           all(c.execute_command("DEL", f"u:{u}") == 1 for u in gone[1:]), "DEL u:<user> through nutcracker")
        ok(all(c.execute_command("EXISTS", f"u:{u}") == 0 and
               direct[owners[u]].execute_command("SEGMENTS", u)[0] == "prior" for u in gone),
           "the forgotten users are gone from the shards that held them")
        appends = [d_.info("persistence")["journal_appends"] for d_ in direct]
        ok(appends == [25, 25], f"each shard journaled its own users' writes {appends}")
        c.execute_command("ZINCRBY", "u:brand-new-user", 1, seg)
        holders = [d_.execute_command("EXISTS", "u:brand-new-user") for d_ in direct]
        ok(sorted(holders) == [0, 1] and c.execute_command("EXISTS", "u:brand-new-user") == 1,
           "a new user lives on the one shard the proxy routes it to")
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        for s in servers:
            s.stop()
done()
