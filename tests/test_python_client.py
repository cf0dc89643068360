#!/usr/bin/python3
"""starling.Client (python/, on redis-py) against a running server and
against starling.Model on the same file.

Every answer is a list of (str, float) tuples with its source; model users'
answers equal Model's bit for bit (the server's float32 values), the solved
ones (FOLDIN, EXPLAIN, SIMILAR, LOOKALIKE) within 1e-5. The batch forms pipeline and
answer in order. Ids that are not UTF-8, and segments named like protocol
keywords, go through. Errors come back as StarlingError with the server's
words; AUTH and the Unix socket work; EVENT and FORGET through the client
are what Model(path, journal) replays.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
try:
    import numpy as np  # noqa: F401
    import redis  # noqa: F401
except ImportError as e:
    print(f"1..0 # SKIP {e} (python3-numpy, python3-redis: scripts/deps.sh test)")
    sys.exit(0)
import starling  # noqa: E402
from oracle import close  # noqa: E402
from serve import Server  # noqa: E402
from tap import done, ok, starling as run  # noqa: E402

ODD_USER = b"\xff\xfe-user".decode("utf-8", "surrogateescape")  # not UTF-8: bytes come back as they went


def typed(res):
    return isinstance(res, starling.Result) and all(isinstance(i, str) and (v is None or isinstance(v, float))
                                                    for i, v in res)


def err(f):
    try:
        f()
    except starling.StarlingError as e:
        return str(e)
    return None


with tempfile.TemporaryDirectory() as d:
    ev = os.path.join(d, "ev.csv")
    run("synth", "-o", ev, "--users", 1500, "--segments", 200, "--events", 30000, "--seed", 11)
    with open(ev, "ab") as f:
        for i in range(6):
            for seg in (b"CALIBRATED", b"COUNT", "intérêt:é".encode(), b"interest:sports:00"):
                f.write(b"%s,%s,%d\n" % (ODD_USER.encode("utf-8", "surrogateescape") if i == 0 else b"kw-%d" % i,
                                         seg, 1 + i))
    path = os.path.join(d, "m.model")
    run("train", ev, "-o", path, "--factors", 16, "--iterations", 4, "--seed", 11, "-q")
    M = starling.Model(path)
    J = os.path.join(d, "j.journal")
    sock = os.path.join(d, "s.sock")
    srv = Server(path, "--journal", J, "--min-audience", 0, "--min-seeds", 0, "--unixsocket", sock, d=d)
    c = starling.Client(port=srv.port)
    users = list(M.user_ids) + ["never-seen"]
    segs = list(M.segment_ids)

    got = c.segments_many(users, 12)
    ok(len(got) == len(users) and all(typed(g) for g in got) and
       all(g == M.segments(u, 12) and g.source == M.segments(u, 12).source for g, u in zip(got, users)),
       f"segments_many of {len(users)} users (pipelined) equals Model, bit for bit, sources included")
    ok(ODD_USER in users and c.segments(ODD_USER, 3) == M.segments(ODD_USER, 3) and
       c.segments(ODD_USER, 3).source == "model", "an id that is not UTF-8 goes and comes back byte for byte")
    ask = [segs[0], "nope", "intérêt:é", segs[5]]
    got = c.score_many(users[:300], ask)
    ok(all(typed(g) and g == M.score(u, ask) for g, u in zip(got, users)), "score_many, None for an unknown segment")
    opts = dict(min=0.05, exclude=segs[:3], unseen=True)
    ok(all(c.segments(u, 7, **opts) == M.segments(u, 7, **opts) for u in users[:50]) and
       c.segments(users[0], 4, only=segs[10:30]) == M.segments(users[0], 4, only=segs[10:30]),
       "segments with MIN, EXCLUDE, UNSEEN, ONLY")
    ok(c.score(users[7], ["interest:sports:00", "CALIBRATED"]) == M.score(users[7], ["interest:sports:00", "CALIBRATED"])
       and c.score(users[7], ["CALIBRATED"])[0][1] is not None,
       "score of a segment named CALIBRATED, last: scored, not taken for the keyword")
    ok("named like a SEGMENTS keyword" in (err(lambda: c.segments(users[0], 3, only=["COUNT"])) or "") and
       M.segments(users[0], 3, only=["COUNT"])[0][0] == "COUNT",
       "only=['COUNT'] cannot be said over the protocol: a clear error (Model answers it)")
    aud = [c.audience(s, 30) for s in segs[:50]]
    ok(all(typed(a) and a == M.audience(s, 30) for a, s in zip(aud, segs)) and
       c.audience(segs[3], 500, min=0.2) == M.audience(segs[3], 500, min=0.2) and
       c.reach(segs[3], 0.2) == M.reach(segs[3], 0.2), "audience (with MIN) and reach equal Model")
    ranked = [v for _, v in M.audience(segs[3], 1200)]
    ts = [ranked[999], -1e30, ranked[9], ranked[499], ranked[99], 1e30]
    curve = c.reach_curve(segs[3], ts)
    ok(curve == M.reach_curve(segs[3], ts) == [M.reach(segs[3], t) for t in ts] and all(type(x) is int for x in curve),
       f"reach_curve equals Model's and REACH at each threshold ({curve})")
    seeds = users[100:140] + ["ghost"]
    ok(close(c.lookalike(seeds, 40), M.lookalike(seeds, 40)), "lookalike within 1e-5 of Model")
    eng = {segs[2]: 3, segs[9]: 1.5, "nope": 2}
    ok(close(c.foldin(eng, 15), M.foldin(eng, 15)) and c.foldin(eng).source == "foldin" and
       all(close(a, M.foldin(e, 5)) for a, e in zip(c.foldin_many([eng, {segs[4]: 1}], 5), [eng, {segs[4]: 1}])),
       "foldin and foldin_many within 1e-5 of Model")
    pairs_ = [(users[i], segs[i % 50]) for i in range(30)]
    ex = c.explain_many(pairs_, 4)
    ok(all(close(a, M.explain(u, s, 4)) and abs(a.total - M.explain(u, s, 4).total) < 1e-5
           for a, (u, s) in zip(ex, pairs_)), "explain_many: contributions and totals within 1e-5")
    ok(all(close(a, M.similar(s, 8)) for a, s in zip(c.similar_many(segs[:40], 8), segs)),
       "similar_many within 1e-5")
    ok(c.history(users[4]) == M.history(users[4]) and c.history("never-seen").source == "none", "history")
    card, mcard = c.card(), M.card()
    ok(all(card[k] == v and type(card[k]) is type(v) for k, v in mcard.items() if k != "path") and
       {"generation", "loaded_at"} <= set(card), "card(): MODEL INFO typed as Model.card()")
    msgs = [(lambda o: o.audience("nope", 3)), (lambda o: o.explain("never-seen", segs[0])),
            (lambda o: o.segments(users[0], 10 ** 6)), (lambda o: o.lookalike(["ghost"], 5)),
            (lambda o: o.foldin({segs[0]: "x"}))]
    ok(all(err(lambda f=f: f(c)) == err(lambda f=f: f(M)) is not None for f in msgs),
       "errors: StarlingError with the same words from the server and from Model")
    ok(err(lambda: c.segments_many(["a", "b"], -1)) == "COUNT must be a whole number >= 0",
       "a batch raises its first error")

    # Online writes through the client, then the journal read back by Model.
    c.event(users[0], segs[1], 2, kind="click")
    c.event_many([(users[1], segs[2], 1), ("brand-new", segs[3], 4, "follow", 1767000000)])
    c.forget(users[2])
    MJ = starling.Model(path, journal=J)
    ok(all(close(c.segments(u, 10), MJ.segments(u, 10)) and c.segments(u, 10).source == MJ.segments(u, 10).source
           for u in (users[0], users[1], users[2], "brand-new")) and c.segments("brand-new").source == "online",
       "event, event_many and forget: the server's answers are what Model(path, journal) replays")
    u = starling.Client(unix_socket_path=sock)
    ok(u.segments(users[5], 5) == c.segments(users[5], 5), "the Unix socket")
    u.close()
    srv.stop()

    pw = Server(path, "--requirepass", "s3cret", d=d)
    good = starling.Client(port=pw.port, password="s3cret")
    ok(good.segments(users[5], 5) == M.segments(users[5], 5), "password: AUTH on connect")
    try:
        starling.Client(port=pw.port, password="wrong").segments(users[5], 5)
        refused = False
    except Exception as e:  # redis-py's AuthenticationError
        refused = "password" in str(e).lower() or "auth" in str(e).lower()
    ok(refused, "a wrong password is refused")
    good.close()
    pw.stop()
done()
