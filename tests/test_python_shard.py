#!/usr/bin/python3
"""starling.ShardedClient (python/): routes as twemproxy does, and its merged
answers are one unsharded server's.

Routing: for several pools (hashes, ketama and modula, a hash_tag, servers
named or not, unequal weights, names that twemproxy's sort reorders), every
key u:<user> is written through a real nutcracker in front of redis-servers
and must land on the server the client picks.

Answers: a model is split by `starling shard` into three shards, each served
with its own journal behind the generated nutcracker.yml; the client's
SEGMENTS and SCORE (routed), AUDIENCE and REACH (every shard, merged),
FOLDIN, SIMILAR and EXPLAIN equal the unsharded server's replies exactly,
also after the same EVENTs and FORGETs went to both. LOOKALIKE over several
shards is refused with the reason; the privacy floor applies to the merge.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from serve import Helpers, Server, free_port, make_model, need, nutcracker_config, wait_port  # noqa: E402
from tap import done, note, ok, starling as run  # noqa: E402

redis = need("redis-server", "nutcracker")
import starling  # noqa: E402

helpers = Helpers()
start, stop = helpers.start, helpers.stop


def routing(d, ids, hash_, dist, tag, servers):
    """Writes u:<id> for every id through nutcracker; True when each key is on
    the server ShardedClient.shard_of names. servers: (weight, name or None)."""
    ports = [free_port() for _ in servers]
    backs = [start(["redis-server", "--port", str(pt), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
             for pt in ports]
    proxy_port = free_port()
    yml = os.path.join(d, f"route-{hash_}-{dist}-{len(servers)}.yml")
    with open(yml, "w") as f:
        f.write(f"pool:\n  listen: 127.0.0.1:{proxy_port}\n  hash: {hash_}\n  distribution: {dist}\n")
        if tag:
            f.write(f'  hash_tag: "{tag}"\n')
        f.write("  redis: true\n  auto_eject_hosts: false\n  timeout: 2000\n  servers:\n")
        for pt, (w, name) in zip(ports, servers):
            f.write(f"   - 127.0.0.1:{pt}:{w}" + (f" {name}" if name else "") + "  # a comment\n")
    proxy = start(["nutcracker", "-c", yml, "-s", str(free_port())])
    try:
        if not (all(wait_port(pt) for pt in ports) and wait_port(proxy_port)):
            return False, "servers did not start"
        c = redis.Redis(host="127.0.0.1", port=proxy_port)
        p = c.pipeline(transaction=False)
        for u in ids:
            p.set(b"u:" + u.encode("utf-8", "surrogateescape"), b"1")
        p.execute()
        sc = starling.ShardedClient(yml)
        wrong = [u for u in ids if not redis.Redis(host="127.0.0.1", port=ports[sc.shard_of(u)]).exists(
            b"u:" + u.encode("utf-8", "surrogateescape"))]
        sc.close()
        return not wrong, f"wrong: {wrong[:3]}" if wrong else ""
    finally:
        for b in backs + [proxy]:
            stop(b)


def flat_pairs(flat):
    return [(flat[i].decode("utf-8", "surrogateescape"), float(flat[i + 1])) for i in range(0, len(flat), 2)]


try:
    with tempfile.TemporaryDirectory() as d:
        ids = [f"u{i:05d}" for i in range(1500)] + ["usér-é", "ユーザー", "\udcff\udcfe-{tag}", "{a}b", "x{}y",
                                                    "emoji-\U0001f600"]
        pools = [("fnv1a_64", "ketama", None, [(1, "shard0"), (1, "shard1"), (1, "shard2")]),
                 ("fnv1a_64", "ketama", None, [(1, None), (2, None), (3, None)]),
                 ("md5", "modula", None, [(1, "b"), (2, "aa"), (1, "c")]),
                 ("crc32a", "ketama", "{}", [(3, "x1"), (1, "x2"), (1, "x3"), (2, "x4")]),
                 ("one_at_a_time", "modula", None, [(1, None), (1, None)]),
                 ("fnv1_64", "ketama", None, [(1, "s0"), (1, "s1"), (1, "s2"), (1, "s3"), (1, "s4")]),
                 ("fnv1_32", "ketama", "{}", [(2, None), (1, "named")]),
                 ("fnv1a_32", "modula", None, [(1, "shard10"), (1, "shard9"), (1, "shard1")])]
        for hash_, dist, tag, servers in pools:
            good, why = routing(d, ids, hash_, dist, tag, servers)
            desc = ", ".join(f"{w}{':' + n if n else ''}" for w, n in servers)
            ok(good, f"{hash_}/{dist}/tag {tag}/servers {desc}: all {len(ids)} keys where the client routes them"
               + (f" ({why})" if why else ""))

        model, _ = make_model(d, users=1500, segments=200, events=30000, seed=7)
        M = starling.Model(model)
        users = M.user_ids.tolist() + ["nobody-at-all", "ünknown"]
        segs = M.segment_ids.tolist()
        whole = Server(model, "--journal", os.path.join(d, "whole.journal"), "--min-audience", 0, "--min-seeds", 0,
                       d=d)
        direct = starling.Client(port=whole.port)
        out = os.path.join(d, "shards")
        run("shard", model, "--shards", 3, "-o", out)
        shards = [Server(os.path.join(out, f"shard-{i}.model"), "--journal", os.path.join(d, f"s{i}.journal"),
                         "--min-audience", 0, "--min-seeds", 0, d=d) for i in range(3)]
        conf, _ = nutcracker_config(out, [s.port for s in shards])
        sc = starling.ShardedClient(conf)
        owners = {u: i for i in range(3) for u in starling.Model(os.path.join(out, f"shard-{i}.model")).user_ids}
        ok(all(sc.shard_of(u) == owners[u] for u in M.user_ids), "every user is routed to the shard that holds it")

        def same_answers(label):
            seg_ok = sc.segments_many(users, 10) == direct.segments_many(users, 10)
            seg_ok &= all(sc.segments(u, 5, unseen=True) == direct.segments(u, 5, unseen=True) for u in users[:100])
            ok(seg_ok, f"{label}: SEGMENTS of all {len(users)} users (routed, pipelined per shard) = unsharded")
            ask = [segs[1], segs[50], "no-such-segment"]
            ok(sc.score_many(users, ask) == direct.score_many(users, ask), f"{label}: SCORE = unsharded")
            aud = all(sc.audience(s, 40) == direct.audience(s, 40) for s in segs)
            aud &= all(sc.audience(s, 300, min=0.1) == direct.audience(s, 300, min=0.1) for s in segs[:20])
            ok(aud, f"{label}: AUDIENCE of all {len(segs)} segments merged from 3 shards = unsharded, in order")
            ok(all(sc.reach(s, x) == direct.reach(s, x) for s in segs[:30] for x in (-0.5, 0.1, 0.4)),
               f"{label}: REACH summed over the shards = unsharded")
            ok(all(sc.explain(u, segs[3], 4) == direct.explain(u, segs[3], 4) for u in users[3:33]) and
               sc.foldin({segs[2]: 3, segs[7]: 1}) == direct.foldin({segs[2]: 3, segs[7]: 1}) and
               sc.similar(segs[4], 9) == direct.similar(segs[4], 9), f"{label}: EXPLAIN, FOLDIN, SIMILAR = unsharded")

        same_answers("model")
        for u, s, w in [(users[0], segs[3], 2), (users[1], segs[9], 1), ("fresh-user", segs[5], 3),
                        (users[700], segs[1], 5)]:
            sc.event(u, s, w, kind="click")
            direct.event(u, s, w, kind="click")
        sc.forget(users[2])
        direct.forget(users[2])
        ok(sc.segments("fresh-user").source == "online" and sc.segments(users[2]).source == "prior",
           "EVENT and FORGET reach the user's shard")
        same_answers("after online writes")
        card = sc.card()
        ok(card["users"] == M.m and card["shards"] == 3, "card: the users of every shard")
        e = None
        try:
            sc.lookalike(users[:20], 10)
        except starling.StarlingError as x:
            e = str(x)
        ok(e is not None and "vectors" in e, "LOOKALIKE over several shards is refused, saying why")
        floor = starling.ShardedClient(conf, min_audience=200)
        hi = direct.reach(segs[0], 0.3)
        thr = 0.3 if hi >= 200 else -1.0
        e = None
        try:
            floor.reach(segs[0], 10.0)
        except starling.StarlingError as x:
            e = str(x)
        ok(floor.reach(segs[0], thr) == direct.reach(segs[0], thr) and e is not None and "privacy floor" in e,
           "min_audience: the floor applies to the merged count")
        floor.close()
        sc.close()
        for s in shards + [whole]:
            s.stop()
        note("routing checked against nutcracker; merged answers against one unsharded server")
finally:
    helpers.kill_all()
done()
