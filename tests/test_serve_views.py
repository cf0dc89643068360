#!/usr/bin/python3
"""The sorted-set views against a real redis-server: the same sorted sets
(u:<user> and s:<segment>, copied member by member with the scores starling
sends) are loaded into redis-server, then every range query, edge case and
bad range is sent to both, and the replies must be the same, reply shape,
order and error text. Scores are compared as 32-bit floats: starling sends
the shortest text of its float, Redis 17 digits of the double it stored.
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import redis
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (install python3-redis and python3-numpy: scripts/deps.sh test)")
    sys.exit(0)
from serve import Server, free_port, make_model  # noqa: E402
from tap import done, ok  # noqa: E402

REDIS = "/usr/bin/redis-server"
if not os.access(REDIS, os.X_OK):
    print("1..0 # SKIP redis-server is not installed (scripts/deps.sh test installs it)")
    sys.exit(0)


def norm(v):
    """Replies with every number-like string as a float32, for comparison."""
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, str):
        try:
            return np.float32(float(v))
        except ValueError:
            return v
    return v


def reply(r, args):
    try:
        return norm(r.execute_command(*args))
    except redis.ResponseError as e:
        return f"error: {e}"


with tempfile.TemporaryDirectory() as d:
    path, ev = make_model(d, users=600, segments=120, events=12000)
    # Ranges of s:<segment> select a few users here, as they would in Redis:
    # no privacy floor (tests/test_journal_serve.py checks it).
    srv = Server(path, "--min-audience", 0, d=d)
    port = free_port()
    rp = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                           "--dir", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
        s.response_callbacks.clear()
        r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        r.response_callbacks.clear()
        for _ in range(200):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        users = [line.split(",")[0] for line in open(ev).read().splitlines()[1:4]]
        seg = s.execute_command("SEGMENTS", users[0], "COUNT", 1)[1][0]
        keys = [f"u:{u}" for u in users] + [f"s:{seg}"]
        for k in keys:
            flat = s.execute_command("ZRANGE", k, 0, -1, "WITHSCORES")
            r.execute_command("ZADD", k, *[v for i in range(0, len(flat), 2) for v in (flat[i + 1], flat[i])])
        ok(all(r.execute_command("ZCARD", k) == s.execute_command("ZCARD", k) for k in keys),
           "redis-server holds the same sorted sets")
        k0 = keys[0]
        mid = s.execute_command("ZRANGE", k0, 40, 40, "WITHSCORES")[1]  # a score as starling prints it
        hi = s.execute_command("ZRANGE", k0, 80, 80, "WITHSCORES")[1]
        cases = []
        for k in keys[:2] + [keys[3], "u:nobody", "s:nothing", "other"]:
            cases += [
                ("ZRANGE", k, 0, -1), ("ZRANGE", k, 0, 9, "WITHSCORES"), ("ZRANGE", k, -5, -1),
                ("ZRANGE", k, 5, 2), ("ZRANGE", k, 100000, 100001), ("ZRANGE", k, -100000, 3),
                ("ZRANGE", k, 0, 9, "REV", "WITHSCORES"), ("ZRANGE", k, f"({mid}", hi, "BYSCORE"),
                ("ZRANGE", k, hi, f"({mid}", "BYSCORE", "REV", "LIMIT", 2, 3, "WITHSCORES"),
                ("ZRANGE", k, "-inf", "+inf", "BYSCORE", "LIMIT", -1, 5),
                ("ZRANGE", k, "-inf", "+inf", "BYSCORE", "LIMIT", 3, -1),
                ("ZRANGE", k, "-inf", "+inf", "BYSCORE", "LIMIT", 0, 0),
                ("ZRANGE", k, mid, mid, "BYSCORE", "WITHSCORES"), ("ZRANGE", k, f"({mid}", f"({mid}", "BYSCORE"),
                ("ZRANGE", k, 0, 1, "LIMIT", 0, 1), ("ZRANGE", k, "a", "b"), ("ZRANGE", k, 0, 1, "BYSCORE", "x"),
                ("ZRANGE", k, "x", 1, "BYSCORE"), ("ZRANGE", k, "(", 1, "BYSCORE"), ("ZRANGE", k, "nan", 1, "BYSCORE"),
                ("ZRANGE", k, "[a", "[b", "BYLEX", "WITHSCORES"), ("ZRANGE", k, 0),
                ("ZREVRANGE", k, 0, 4, "WITHSCORES"), ("ZREVRANGE", k, -3, -1), ("ZREVRANGE", k, 0, 4, "LIMIT", 1, 2),
                ("ZREVRANGE", k, 0, 1, "BYSCORE"), ("ZREVRANGE", k, "1.5", 2),
                ("ZRANGEBYSCORE", k, mid, hi, "WITHSCORES", "LIMIT", 1, 4), ("ZRANGEBYSCORE", k, hi, mid),
                ("ZRANGEBYSCORE", k, "-inf", f"({mid}"), ("ZRANGEBYSCORE", k, 0, 1, "LIMIT", 1),
                ("ZRANGEBYSCORE", k, 0, 1, "REV"), ("ZRANGEBYSCORE", k, "zero", 1),
                ("ZREVRANGEBYSCORE", k, "+inf", "-inf", "LIMIT", 0, 3), ("ZREVRANGEBYSCORE", k, hi, mid, "WITHSCORES"),
                ("ZCOUNT", k, f"({mid}", hi), ("ZCOUNT", k, "-inf", "+inf"), ("ZCOUNT", k, "x", 1), ("ZCOUNT", k, 1),
                ("ZCARD", k), ("ZCARD", k, k), ("EXISTS", k, k, "nokey"), ("TYPE", k), ("ZSCORE", k),
            ]
        members = s.execute_command("ZRANGE", k0, 0, 2) + ["not-a-member"]
        cases += [("ZSCORE", k0, members[0]), ("ZSCORE", k0, "not-a-member"), ("ZMSCORE", k0, *members),
                  ("ZMSCORE", "u:nobody", "a", "b"), ("ZMSCORE", k0)]
        sm = s.execute_command("ZRANGE", keys[3], 0, 1)
        cases += [("ZSCORE", keys[3], sm[0]), ("ZMSCORE", keys[3], sm[1], "ghost", sm[0])]
        bad = []
        for c in cases:
            a, b = reply(s, c), reply(r, c)
            if c[-1] == "BYLEX" or (len(c) > 6 and c[-2:] == ("BYLEX", "WITHSCORES")):
                pass
            if a != b and not (c[-1:] == ("WITHSCORES",) and "BYLEX" in c):
                bad.append((c, a, b))
        for c, a, b in bad[:5]:
            print(f"# {' '.join(map(str, c))}\n#   starling: {str(a)[:300]}\n#   redis:    {str(b)[:300]}")
        ok(not bad, f"{len(cases) - len(bad)} of {len(cases)} sorted-set queries answer exactly as redis-server")
        # BYLEX is the one documented difference: refused, since members are ordered by score.
        ok("BYLEX is not supported" in reply(s, ("ZRANGE", k0, "[a", "[b", "BYLEX")), "BYLEX is refused with a reason")
        s.close()
        r.close()
    finally:
        rp.terminate()
        rp.wait(10)
        ok(srv.stop() == 0, "server stopped cleanly")
done()
