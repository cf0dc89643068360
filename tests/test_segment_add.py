#!/usr/bin/python3
"""Segments from lists of users (SEGMENT ADD, SET, PARTIAL) on real servers.

The vector SEGMENT ADD solves is checked against an implicit-ALS item solve
written here in numpy from the model file's user factors and
hyper-parameters (w0 U^T U + sum (c - w0) u u^T + lambda I) y = sum c u,
for the default weighting and for an unobserved weight with
frequency-scaled regularisation. Then: SEGMENTS, SCORE, AUDIENCE, REACH and
the s: view see the segment; adding members re-solves it; unknown and
forgotten users are left out of the solve; a restart, a compaction and a
reload replay it; `train --journal` learns it; EVENTs on an unknown segment
create it at --segment-min-users distinct users; the privacy floor applies;
bad input gets a clear error; two shards add it by SEGMENT PARTIAL, a solve
of the summed system, and SEGMENT SET, and agree with one server.
"""
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
try:
    import numpy as np
    import redis
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (install python3-redis and python3-numpy: scripts/deps.sh test)")
    sys.exit(0)
from serve import Server as _Server, make_model  # noqa: E402
import starling as starling_py  # noqa: E402
from starling import Model  # noqa: E402
from tap import done, ok, starling  # noqa: E402


STARTED = []


def Server(*a, **kw):
    """A server the end of the test stops whatever happened."""
    s = _Server(*a, **kw)
    STARTED.append(s)
    return s


def item_solve(M, rows, r=None, X=None):
    """The implicit-ALS solve of one segment's row, as implicit's
    partial_fit_items does it, in float64 from the model's own settings;
    X: the members' vectors when not the model's rows."""
    h = M.header
    U = M.U.astype(np.float64)
    X = U[rows] if X is None else np.asarray(X, dtype=np.float64)
    r = np.ones(len(rows)) if r is None else np.asarray(r, dtype=np.float64)
    w0 = h["unobserved_weight"] if h["unobserved_weight"] > 0 else 1.0
    if h["confidence"] == 1:  # log
        f = np.log1p(r / h["eps"])
    elif h["confidence"] == 0:
        f = r
    else:
        raise AssertionError("the test covers the linear and log schemes")
    c = 1.0 + h["alpha"] * f
    lam = h["lambda_"]
    if h["regularization"] == 1:
        lam = lam * (len(rows) + h["reg_alpha0"] * U.shape[0]) ** h["reg_nu"]
    A = w0 * (U.T @ U) + X.T @ ((c - w0)[:, None] * X) + lam * np.eye(U.shape[1])
    return np.linalg.solve(A, X.T @ c)


def cmd(r, *a):
    return r.execute_command(*a)


def err(f):
    try:
        f()
    except redis.ResponseError as e:
        return str(e)
    return ""


def scores(r, seg, users):
    return np.array([float(cmd(r, "SCORE", u, seg)[1][0]) for u in users])


def check_solve(d, name, train_args):
    model, ev = make_model(d, name=name, seed=5)
    if train_args:
        starling("train", ev, "-o", os.path.join(d, name), "--factors", 16, "--iterations", 5, "--seed", 5, "-q",
                 "--validation", 0, *train_args)
    M = Model(os.path.join(d, name))
    if train_args:
        ok(M.header["unobserved_weight"] == 0.3 and M.header["regularization"] == 1,
           f"{name}: trained with an unobserved weight and frequency-scaled regularisation")
    srv = Server(M.path, "--journal", os.path.join(d, name + ".journal"), "--min-audience", 0, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=30)
    rows = list(range(3, 300, 7))
    got = cmd(r, "SEGMENT", "ADD", "adv:list", *[M.user_ids[u] for u in rows])
    ok(got == ["members", len(rows), "solved_from", len(rows), "without_vector", 0], f"{name}: SEGMENT ADD replies {got}")
    y = item_solve(M, rows)
    probe = list(range(0, 2000, 37))
    want = M.U[probe].astype(np.float64) @ y
    have = scores(r, "adv:list", [M.user_ids[u] for u in probe])
    ok(np.allclose(have, want, rtol=2e-3, atol=2e-4),
       f"{name}: every user's score for it = U y of a numpy implicit-ALS item solve "
       f"(max diff {np.max(np.abs(have - want)):.2e})")
    srv.stop()
    return M


def check_prior_shapes(d):
    """A user the model has never seen is answered from the prior q (its
    uncalibrated score), for a segment added online too, q in the model's
    shape: log(1 + members) / log(1 + the model's largest popularity), or
    members / that with the linear prior."""
    _, ev = make_model(d, name="shape-src.model", seed=5)
    for shape in ("log", "linear"):
        path = os.path.join(d, f"shape-{shape}.model")
        starling("train", ev, "-o", path, "--factors", 16, "--iterations", 5, "--seed", 5, "-q",
                 "--prior-shape", shape)
        M = Model(path)
        w = np.float32(M.header["prior_weight"])
        srv = Server(path, "--journal", path + ".journal", "--min-audience", 0, "--segment-min-users", 3, d=d)
        r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=30)
        cmd(r, "SEGMENT", "ADD", "adv:p", *[M.user_ids[u] for u in range(10, 60, 5)])
        got = cmd(r, "SCORE", "never-seen", "adv:p", M.segment_ids[7])
        top = float(np.max(M.popularity))
        q = min(10 / top, 1.0) if shape == "linear" else math.log1p(10) / math.log1p(top)
        want = [float(np.float32(q)), float(M.prior[7])]
        ok(w > 0 and bool(M.header["flags"] & 4) == (shape == "linear") and got[0] == "prior" and
           [float(np.float32(float(x))) for x in got[1]] == want,
           f"{shape} prior: a never-seen user's answer for an added segment of 10 members and for a model segment "
           f"is its prior q ({got[1]} = {want})")
        srv.stop()


def main(d):
    check_prior_shapes(d)
    check_solve(d, "w0.model", ["--unobserved-weight", 0.3, "--regularization", "frequency"])
    M = check_solve(d, "m.model", [])
    ids = M.user_ids
    J = os.path.join(d, "seg.journal")
    flags = ["--journal", J, "--appendfsync", "always", "--min-audience", 0, "--segment-min-users", 3]
    srv = Server(M.path, *flags, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=30)
    rows = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89]
    got = cmd(r, "SEGMENT", "ADD", "adv:1", *[ids[u] for u in rows], "nobody-1", ids[1])
    ok(got == ["members", 11, "solved_from", 10, "without_vector", 1],
       f"a listed user the model does not know is a member left out of the solve; a repeat counts once ({got})")
    y = item_solve(M, rows)
    U = M.U.astype(np.float64)
    allsc = U @ y

    # The ranking commands see it.
    top = [ids[int(u)] for u in np.argsort(-allsc, kind="stable")[:10]]
    aud = cmd(r, "AUDIENCE", "adv:1", "COUNT", 10)
    ok(aud[::2] == top, "AUDIENCE of the added segment = numpy's top 10 of U y")
    ok(cmd(r, "ZREVRANGE", "s:adv:1", 0, 9) == top, "the s:<segment> view ranks the same users")
    t = float(np.sort(allsc)[-25])
    reach = cmd(r, "REACH", "adv:1", "MIN", repr(t - 1e-5))
    ok(abs(reach - 25) <= 1, f"REACH counts the users above a score ({reach} for 25)")
    V = M.V.astype(np.float64)
    ahead = ((U @ V.T) > allsc[:, None]).sum(axis=1)
    u = int(np.argmin(ahead))
    n = int(ahead[u]) + 3
    seg = cmd(r, "SEGMENTS", ids[u], "COUNT", n)[1]
    full = np.concatenate([U[u] @ V.T, [allsc[u]]])
    names = list(M.segment_ids) + ["adv:1"]
    want = [names[int(i)] for i in np.argsort(-full, kind="stable")[:n]]
    ok(seg[::2] == want and "adv:1" in want,
       f"SEGMENTS ranks it among the model's segments (place {want.index('adv:1') + 1} of {n} for {ids[u]})")
    ex = cmd(r, "SEGMENTS", ids[u], "COUNT", n, "EXCLUDE", "adv:1")[1][::2]
    ok("adv:1" not in ex and ex[:n - 1] == [w for w in want if w != "adv:1"], "EXCLUDE leaves it out")
    pipe = r.pipeline(transaction=False)  # one write: the server scores the run of SEGMENTS together
    for _ in range(6):
        pipe.execute_command("SEGMENTS", ids[u], "COUNT", n)
        pipe.execute_command("SEGMENTS", ids[u], "COUNT", n, "EXCLUDE", "adv:1")
    replies = pipe.execute()
    ok(all(x[1] == seg for x in replies[::2]) and all(x[1][::2] == ex for x in replies[1::2]),
       "pipelined SEGMENTS (scored as one run) rank it as single requests do")
    only = cmd(r, "SEGMENTS", ids[u], "ONLY", "adv:1", M.segment_ids[0])[1]
    ok("adv:1" in only[::2] and len(only) == 4, f"ONLY lists it ({only[::2]})")
    prior_only = cmd(r, "SCORE", "never-seen", "adv:1")
    ok(prior_only[0] == "prior" and prior_only[1][0] is not None, "a user answered from the prior gets its prior")

    # More members re-solve it; forgotten users are left out.
    cmd(r, "FORGET", ids[400])
    got = cmd(r, "SEGMENT", "ADD", "adv:1", ids[144], ids[233], ids[400])
    rows2 = rows + [144, 233]
    y2 = item_solve(M, rows2)
    have = scores(r, "adv:1", [ids[u] for u in range(0, 2000, 101)])
    ok(got == ["members", 14, "solved_from", 12, "without_vector", 2] and
       np.allclose(have, U[list(range(0, 2000, 101))] @ y2, rtol=2e-3, atol=2e-4),
       f"adding members re-solves from all of them; a forgotten user is not used ({got})")

    # A member changed online is solved with its online vector.
    cmd(r, "EVENT", ids[7], M.segment_ids[3], 5)
    cmd(r, "SEGMENT", "ADD", "adv:o", ids[7], ids[9], ids[11])
    x7 = Model(M.path, journal=J).user_vector(ids[7])
    ok(not np.allclose(x7, M.U[7]), "the EVENT changed the member's vector")
    yo = item_solve(M, [7, 9, 11], X=np.stack([x7, M.U[9], M.U[11]]))
    probe = [u for u in range(0, 2000, 53) if u != 7]
    have = scores(r, "adv:o", [ids[u] for u in probe])
    ok(np.allclose(have, U[probe] @ yo, rtol=2e-3, atol=2e-4),
       f"a member changed online counts with its online vector (max diff {np.max(np.abs(have - U[probe] @ yo)):.2e})")

    # FORGET of a member re-solves every added segment without them.
    cmd(r, "FORGET", ids[144])
    rows3 = [u for u in rows2 if u != 144]
    have = scores(r, "adv:1", [ids[u] for u in range(0, 2000, 101)])
    ok(np.allclose(have, U[list(range(0, 2000, 101))] @ item_solve(M, rows3), rtol=2e-3, atol=2e-4),
       "FORGET of a member re-solves the segment without them")
    before = [cmd(r, "SCORE", ids[u], "adv:1") for u in range(0, 50)] + [cmd(r, "SCORE", ids[0], "adv:o")]

    # Bad input.
    ok("none of the 2 users" in err(lambda: cmd(r, "SEGMENT", "ADD", "adv:none", "x-1", "x-2")),
       "a list of unknown users only is refused")
    ok("wrong number of arguments" in err(lambda: cmd(r, "SEGMENT", "ADD", "adv:empty")), "an empty list is refused")
    ok("is in the model" in err(lambda: cmd(r, "SEGMENT", "ADD", M.segment_ids[0], ids[1])),
       "a name of a model segment is refused (SEGMENT ADD makes new segments only)")
    ok("needs 16 values" in err(lambda: cmd(r, "SEGMENT", "SET", "adv:v", 1, 2)), "SEGMENT SET of the wrong rank")
    ok("not a finite number" in err(lambda: cmd(r, "SEGMENT", "SET", "adv:v", *(["nan"] * 16))),
       "SEGMENT SET of a non-number")
    ok(cmd(r, "SCORE", ids[0], "adv:none")[1] == [None], "a refused segment does not exist")

    # EVENTs on an unknown segment: served from the third distinct user.
    for i, u in enumerate([10, 11, 11]):
        cmd(r, "EVENT", ids[u], "new:topic", 1)
    ok(cmd(r, "SCORE", ids[0], "new:topic")[1] == [None], "two distinct users: not yet a segment")
    cmd(r, "EVENT", ids[12], "new:topic", 1)
    ok(cmd(r, "SCORE", ids[0], "new:topic")[1][0] is not None, "the third distinct user's EVENT creates it")
    ev_before = cmd(r, "SCORE", ids[0], "new:topic")

    # Restart, compaction, reload: replayed the same, float for float.
    srv.stop()
    srv = Server(M.path, *flags, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=30)
    ok([cmd(r, "SCORE", ids[u], "adv:1") for u in range(0, 50)] + [cmd(r, "SCORE", ids[0], "adv:o")] == before,
       "a restart replays SEGMENT ADD exactly (the online member's vector too)")
    ok(cmd(r, "SCORE", ids[0], "new:topic") == ev_before, "and the segment the EVENTs created")
    cmd(r, "JOURNAL", "COMPACT")
    for _ in range(400):
        if int(r.info("persistence").get("journal_compactions", 0)) >= 1:
            break
        time.sleep(0.05)
    ok(int(r.info("persistence").get("journal_compactions", 0)) >= 1, "the journal was compacted")
    srv.stop()
    srv = Server(M.path, *flags, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=30)
    ok([cmd(r, "SCORE", ids[u], "adv:1") for u in range(0, 50)] + [cmd(r, "SCORE", ids[0], "adv:o")] == before,
       "a compacted journal keeps it")
    out = starling("audience", M.path, "--segment", "adv:1", "-n", 10, "--journal", J, "--min-audience", 0)
    batch = [line.split()[0] for line in out.splitlines() if line.strip()]
    ok(batch == cmd(r, "AUDIENCE", "adv:1", "COUNT", 10)[::2],
       "the batch audience with --journal answers for the added segment as the server does")
    srv.stop()
    srv = Server(M.path, *flags[:-1], 10, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=30)
    ok(cmd(r, "SCORE", ids[0], "new:topic")[1] == [None],
       "replayed with --segment-min-users 10, three users do not make a segment (the threshold in force decides)")

    # The privacy floor applies as to any segment.
    srv.stop()
    srv = Server(M.path, "--journal", J, "--min-audience", 50, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=30)
    hi = repr(float(np.sort(U @ y2)[-10]))
    ok("min-audience" in err(lambda: cmd(r, "AUDIENCE", "adv:1", "COUNT", 10, "MIN", hi)),
       "AUDIENCE of fewer than --min-audience users is refused")
    ok("min-audience" in err(lambda: cmd(r, "REACH", "adv:1", "MIN", hi)), "and so is REACH")
    srv.stop()

    # train --journal learns it: its members become pairs of the new model.
    m2 = os.path.join(d, "m2.model")
    starling("train", os.path.join(d, "ev5.csv"), "--journal", J, "-o", m2, "--factors", 16, "--iterations", 5,
             "--seed", 5, "-q", "--validation", 0)
    M2 = Model(m2)
    s2 = M2.segment_index("adv:1")
    members = set()
    if s2 is not None:
        for u in range(len(M2.user_ids)):
            lo, hi_ = int(M2.hist_ptr[u]), int(M2.hist_ptr[u + 1])
            if s2 in set(int(x) for x in M2.hist_idx[lo:hi_]):
                members.add(M2.user_ids[u])
    ok(s2 is not None and members == {ids[u] for u in rows3} | {"nobody-1", ids[400]},
       f"train --journal learns the segment from its {len(members)} members (one forgotten later is left out; a "
       f"user unknown to the model, or listed after a FORGET, joins as an EVENT would)")
    srv = Server(m2, "--journal", J, "--min-audience", 0, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=30)
    ok("is in the model" in err(lambda: cmd(r, "SEGMENT", "ADD", "adv:1", ids[1])),
       "the retrained model has it: SEGMENT ADD on it is refused, and replay skips the records it holds")
    srv.stop()

    # Two shards: PARTIAL on each, the summed system solved once, SET on each.
    sd = os.path.join(d, "shards")
    starling("shard", M.path, "--shards", 2, "-o", sd)
    one = Server(M.path, "--journal", os.path.join(d, "one.journal"), "--min-audience", 0, d=d)
    r1 = redis.Redis(host="127.0.0.1", port=one.port, decode_responses=True, socket_timeout=30)
    shards = [Server(os.path.join(sd, f"shard-{i}.model"), "--journal", os.path.join(d, f"s{i}.journal"),
                     "--min-audience", 0, d=d) for i in range(2)]
    rs = [redis.Redis(host="127.0.0.1", port=s.port, decode_responses=True, socket_timeout=30) for s in shards]
    lst = [ids[u] for u in range(0, 600, 11)] + ["nobody-2"]
    cmd(r1, "SEGMENT", "ADD", "adv:s", *lst)
    parts = [dict(zip(p[::2], p[1::2])) for p in (cmd(x, "SEGMENT", "PARTIAL", "adv:s", *lst) for x in rs)]
    k = int(parts[0]["k"])
    A = sum(np.array(p["gram"], dtype=np.float64).reshape(k, k) for p in parts)
    b = sum(np.array(p["rhs"], dtype=np.float64) for p in parts)
    used = sum(int(p["used"]) for p in parts)
    users = sum(int(p["users"]) for p in parts)
    p0 = parts[0]
    w0 = float(p0["unobserved"])
    lam = float(p0["lambda"]) / w0
    if p0["regularization"] == "frequency":
        lam *= (used + float(p0["reg_alpha0"]) * users) ** float(p0["reg_nu"])
    ys = np.linalg.solve(A + lam * np.eye(k), b)
    ok(used == len(lst) - 1 and [int(p["members"]) for p in parts] == [len(lst)] * 2,
       f"each shard counts its own members ({[p['used'] for p in parts]}) of the {len(lst)} listed")
    for x in rs:
        cmd(x, "SEGMENT", "SET", "adv:s", *[repr(float(v)) for v in ys])
    probe = [ids[u] for u in range(0, 2000, 29)]
    whole = scores(r1, "adv:s", probe)
    split = []
    for u in probe:
        got = [cmd(x, "SCORE", u, "adv:s") for x in rs]
        split.append(float([g for g in got if g[0] == "model"][0][1][0]))
    ok(np.allclose(whole, split, rtol=1e-3, atol=1e-4),
       f"scores on the shard holding each user = the one server's (max diff {np.max(np.abs(whole - split)):.2e})")
    yml = os.path.join(d, "pool.yml")
    with open(yml, "w") as f:
        f.write("pool:\n  listen: 127.0.0.1:1\n  hash: fnv1a_64\n  distribution: ketama\n  servers:\n")
        for i, sv in enumerate(shards):
            f.write(f"   - 127.0.0.1:{sv.port}:1 shard{i}\n")
    sc = starling_py.ShardedClient(yml)
    res = sc.add_segment("adv:s2", lst)
    ok(res["solved_from"] == used and np.allclose(res["vector"], ys, rtol=1e-5, atol=1e-6) and
       cmd(rs[0], "SCORE", probe[0], "adv:s2") == cmd(rs[0], "SCORE", probe[0], "adv:s"),
       "ShardedClient.add_segment does the same two steps")
    sc.close()
    for s in shards:
        s.stop()
    shards = [Server(os.path.join(sd, f"shard-{i}.model"), "--journal", os.path.join(d, f"s{i}.journal"),
                     "--min-audience", 0, d=d) for i in range(2)]
    rs = [redis.Redis(host="127.0.0.1", port=s.port, decode_responses=True, socket_timeout=30) for s in shards]
    ok(all(cmd(x, "SCORE", probe[0], "adv:s")[1][0] is not None for x in rs), "each shard replays SEGMENT SET")
    for s in shards:
        s.stop()
    one.stop()


with tempfile.TemporaryDirectory() as tmp:
    try:
        main(tmp)
    finally:
        for server in STARTED:
            server.stop()
done()
