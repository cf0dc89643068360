#!/usr/bin/python3
"""starling shard routes every user exactly as twemproxy does.

Shards a model, starts one redis-server per shard and a nutcracker with the
nutcracker.yml that starling wrote (only the ports changed), writes every
user's key u:<user> through the proxy, and checks that each key landed on the
server whose shard file holds that user. Several hash / distribution /
hash_tag settings, ids with non-ASCII bytes included.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from serve import Helpers, free_port, need, nutcracker_config, wait_port  # noqa: E402
from starling import Model  # noqa: E402
from tap import done, note, ok, starling  # noqa: E402

redis = need("redis-server", "nutcracker")
helpers = Helpers()
start = helpers.start


try:
    with tempfile.TemporaryDirectory() as d:
        p = lambda name: os.path.join(d, name)  # noqa: E731
        starling("synth", "-o", p("ev.csv"), "--users", 600, "--segments", 60, "--events", 6000, "--seed", 5)
        with open(p("ev.csv"), "a") as f:
            for i, name in enumerate(["usér-é", "ユーザー", "\u00ff\u00fe-{tag}", "{a}b", "x{}y", "emoji-\U0001f600"]):
                f.write(f"{name},interest:sports:0{i % 3},1\n")
        starling("train", p("ev.csv"), "-o", p("m.model"), "--factors", 4, "--iterations", 2, "-q")
        configs = [("fnv1a_64", "ketama", None, 3), ("fnv1a_64", "ketama", None, 7), ("md5", "modula", None, 3),
                   ("crc32a", "ketama", "{}", 4), ("fnv1_32", "modula", None, 2), ("one_at_a_time", "ketama", None, 5),
                   ("fnv1a_32", "ketama", "{}", 3), ("fnv1_64", "ketama", None, 3)]
        for hash_, dist, tag, n in configs:
            out = p(f"sh-{hash_}-{dist}-{n}")
            args = ["shard", p("m.model"), "--shards", n, "-o", out, "--hash", hash_, "--distribution", dist]
            if tag:
                args += ["--hash-tag", tag]
            starling(*args)
            owner = {}
            total = 0
            for i in range(n):
                m = Model(os.path.join(out, f"shard-{i}.model"))
                total += len(m.user_ids)
                for u in m.user_ids:
                    owner[u] = i
            ports = [free_port() for _ in range(n)]
            servers = [start(["redis-server", "--port", str(pt), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"]) for pt in ports]
            conf, proxy_port = nutcracker_config(out, ports)
            proxy = start(["nutcracker", "-c", conf, "-s", str(free_port())])
            up = all(wait_port(pt) for pt in ports) and wait_port(proxy_port)
            if not ok(up, f"{hash_}/{dist}/tag {tag}/{n} shards: redis-servers and nutcracker are up"):
                continue
            c = redis.Redis(host="127.0.0.1", port=proxy_port)
            for u in owner:
                c.set(b"u:" + u.encode("utf-8", "surrogateescape"), b"1")
            where = {}
            for i, pt in enumerate(ports):
                for key in redis.Redis(host="127.0.0.1", port=pt).keys("*"):
                    where[key[2:].decode("utf-8", "surrogateescape")] = i
            wrong = [u for u in owner if where.get(u) != owner[u]]
            ok(total == len(owner) and not wrong,
               f"{hash_}/{dist}/tag {tag}/{n} shards: all {len(owner)} users on the shard twemproxy routes them to"
               + (f" (wrong: {wrong[:3]})" if wrong else ""))
            for pr in servers + [proxy]:
                helpers.stop(pr)
        note("every user id was written through nutcracker and found on its shard's server")
finally:
    helpers.kill_all()
done()
