#!/usr/bin/python3
"""`starling audience` over a model or all its shards answers AUDIENCE,
LOOKALIKE and REACH as one unsharded server does, with the privacy floors."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from serve import Server, make_model  # noqa: E402
from starling import Model  # noqa: E402
from tap import STARLING, done, ok, skip_all, starling  # noqa: E402

try:
    import redis
except ImportError:
    skip_all("needs python3-redis")


def pairs(reply):
    return [(reply[i].decode(), float(reply[i + 1])) for i in range(0, len(reply), 2)]


def lines(text):
    out = []
    for line in text.splitlines():
        u, s = line.split("\t")
        out.append((u, float(s)))
    return out


def same(a, b, tol=0.0):
    return len(a) == len(b) and all(x[0] == y[0] and abs(x[1] - y[1]) <= tol * max(1, abs(x[1])) for x, y in zip(a, b))


with tempfile.TemporaryDirectory() as d:
    model, _ = make_model(d, users=3000, segments=150, events=50000, seed=11)
    m = Model(model)
    starling("shard", model, "--shards", 3, "-o", os.path.join(d, "sh"))
    shards = [os.path.join(d, "sh", f"shard-{i}.model") for i in range(3)]
    srv = Server(model, d=d)
    c = redis.Redis(host="127.0.0.1", port=srv.port)
    seg = m.segment_ids[3]
    want = pairs(c.execute_command("AUDIENCE", seg, "COUNT", 200))
    one = lines(starling("audience", model, "--segment", seg, "-n", 200))
    many = lines(starling("audience", *shards, "--segment", seg, "-n", 200))
    ok(same(one, want, 1e-6), "AUDIENCE over the model equals the server's")
    ok(same(many, want, 1e-6), "AUDIENCE over the 3 shards equals the unsharded server's")
    thr = want[150][1]
    r_srv = c.execute_command("REACH", seg, "MIN", repr(thr))
    r_sh = int(starling("audience", *shards, "--segment", seg, "--reach", "--min", repr(thr)))
    ok(r_srv == r_sh and r_sh >= 150, f"REACH over the shards equals the server's ({r_sh})")
    seeds = m.user_ids[100:230]
    want = pairs(c.execute_command("LOOKALIKE", "COUNT", 150, *seeds))
    with open(os.path.join(d, "seeds.txt"), "w") as f:
        f.write("\n".join(seeds) + "\n")
    many = lines(starling("audience", *shards, "--lookalike", os.path.join(d, "seeds.txt"), "-n", 150))
    ok(same(many, want, 1e-5), "LOOKALIKE over the 3 shards equals the unsharded server's")
    ok(not set(seeds) & {u for u, _ in many}, "no seed is its own look-alike")
    inline = lines(starling("audience", *shards, "--seeds", ",".join(seeds), "-n", 150))
    ok(inline == many, "--seeds inline equals --lookalike FILE")
    # Privacy floors.
    top = pairs(c.execute_command("AUDIENCE", seg, "COUNT", 10))
    r = subprocess.run([STARLING, "audience", *shards, "--segment", seg, "--min", repr(top[5][1])],
                       capture_output=True, text=True)
    ok(r.returncode == 1 and "below the privacy floor of 100" in r.stderr, f"a small audience is refused ({r.stderr.strip()})")
    r = subprocess.run([STARLING, "audience", *shards, "--seeds", ",".join(m.user_ids[:10])], capture_output=True, text=True)
    ok(r.returncode == 1 and "look-alikes need at least 100" in r.stderr, f"a short seed list is refused ({r.stderr.strip()})")
    r = subprocess.run([STARLING, "audience", *shards, "--segment", "nope"], capture_output=True, text=True)
    ok(r.returncode == 1 and "unknown segment 'nope'" in r.stderr, "unknown segment")
    r = subprocess.run([STARLING, "audience", shards[0], model.replace("m.model", "other.model")], capture_output=True,
                       text=True)
    ok(r.returncode in (1, 2), "a missing file or no mode is an error")
    srv.stop()
done()
