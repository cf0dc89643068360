#!/usr/bin/python3
"""Online events and opt-outs on a real server with a journal.

EVENT re-solves a user exactly as FOLDIN solves the same engagement (kind
weights from the model), ZINCRBY is EVENT with Redis's reply; FORGET (and DEL,
UNLINK) removes a user from every reply, and the user stays removed after
MODEL RELOAD, after a SIGKILL and restart, and from the model that
`starling train --journal` makes, which the server then loads without
applying its records twice. Compaction erases forgotten users' events from
the file. The privacy floors refuse small audiences and short seed lists.
Every policy keeps what it acknowledged across a SIGKILL.
"""
import os
import shutil
import signal
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
from serve import Server  # noqa: E402
from starling import Journal, Model  # noqa: E402
from tap import done, note, ok, starling  # noqa: E402

f32 = np.float32


def hist(r, user):
    src, pairs = r.execute_command("HISTORY", user)
    return src, {pairs[i]: f32(float(pairs[i + 1])) for i in range(0, len(pairs), 2)}


def model_hist(M, u):
    lo, hi = int(M.hist_ptr[u]), int(M.hist_ptr[u + 1])
    return {M.segment_ids[int(s)]: f32(v) for s, v in zip(M.hist_idx[lo:hi], M.hist_val[lo:hi])}


def foldin(r, h, count=10):
    args = []
    for s, v in sorted(h.items()):
        args += [s, repr(float(v))]
    return r.execute_command("FOLDIN", "COUNT", count, *args)


def err(f):
    try:
        f()
    except redis.ResponseError as e:
        return str(e)
    return ""


def everyone(r, seg, n):
    """Every user (model and online) of a segment, by AUDIENCE."""
    a = r.execute_command("AUDIENCE", seg, "COUNT", n)
    return set(a[::2])


KINDS = "impression=0.5,click=1,follow=2,conversion=5"

with tempfile.TemporaryDirectory() as d:
    ev = os.path.join(d, "ev.csv")
    path = os.path.join(d, "m.model")
    starling("synth", "-o", ev, "--users", 1500, "--segments", 200, "--events", 30000, "--seed", 7)
    train_args = ["--factors", 16, "--iterations", 5, "--seed", 7, "-q", "--kind-weight", KINDS]
    starling("train", ev, "-o", path, *train_args)
    M = Model(path)
    J = os.path.join(d, "events.journal")
    flags = ["--journal", J, "--appendfsync", "always", "--min-audience", 0, "--min-seeds", 0, "--allow-reload-path"]
    srv = Server(path, *flags, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
    n_users = len(M.user_ids)

    # EVENT on a user the model has never seen: created, solved as FOLDIN.
    sa, sb, sc = M.segment_ids[0], M.segment_ids[5], M.segment_ids[9]
    ok(r.execute_command("EVENT", "new-1", sa, 2) == "OK", "EVENT on a new user: +OK")
    ok(r.execute_command("EVENT", "new-1", sb, 1, "KIND", "conversion", "TS", "2026-01-01T00:00:00Z") == "OK",
       "EVENT with KIND and TS")
    ok(hist(r, "new-1") == ("online", {sa: f32(2), sb: f32(5)}), "the history holds weight x the model's kind weight")
    seg = r.execute_command("SEGMENTS", "new-1", "COUNT", 10)
    ok(seg[0] == "online" and seg[1] == foldin(r, {sa: 2, sb: 5})[1],
       "SEGMENTS of the new user = FOLDIN of the same engagement, score for score")

    # EVENT on a model user: the model's history plus the event, re-solved.
    u7 = M.user_ids[7]
    want = model_hist(M, 7)
    ok(hist(r, u7) == ("model", want), "HISTORY of a model user is the model's training history")
    r.execute_command("EVENT", u7, sa, 3, "KIND", "click")
    want[sa] = f32(float(want.get(sa, 0)) + 3)
    ok(hist(r, u7) == ("online", want), "an event adds to the model's history")
    ok(r.execute_command("SEGMENTS", u7, "COUNT", 10)[1] == foldin(r, want)[1],
       "and the vector is re-solved from the whole history (= FOLDIN of it)")
    z = r.execute_command("ZINCRBY", f"u:{u7}", 2, sc)
    want[sc] = f32(float(want.get(sc, 0)) + 2)
    ok(z == r.execute_command("ZSCORE", f"u:{u7}", sc) and hist(r, u7)[1] == want,
       f"ZINCRBY u:<user> adds the event and replies the new score ({z})")
    ok(r.execute_command("EVENT", u7, "no-such-segment", 4) == "OK" and hist(r, u7)[1] == want,
       "an event on a segment the model lacks is journaled, and changes nothing now")
    ok(r.execute_command("ZINCRBY", f"u:{u7}", 1, "no-such-segment") is None, "ZINCRBY on it replies nil")
    ok("not a number >= 0" in err(lambda: r.execute_command("EVENT", u7, sa, -1)), "a negative weight is refused")
    ok("syntax error" in err(lambda: r.execute_command("EVENT", u7, sa, 1, "COLOUR", "red")), "an unknown option")
    ok("not a time" in err(lambda: r.execute_command("EVENT", u7, sa, 1, "TS", "yesterday")), "a bad TS")
    ok("u:<user>" in err(lambda: r.execute_command("ZINCRBY", f"s:{sa}", 1, u7)), "ZINCRBY on an s: key is refused")
    ok(r.execute_command("ZSCORE", f"s:{sa}", "new-1") == r.execute_command("ZSCORE", f"u:new-1", sa),
       "the new user is a member of s:<segment> views")
    ok("new-1" in everyone(r, sa, n_users + 10), "and of AUDIENCE")

    # Writers racing on one user: each event is solved outside the write
    # lock and retried when another changed the user meanwhile; none is lost.
    import threading

    def hammer(n):
        cc = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
        p = cc.pipeline(transaction=False)
        for i in range(n):
            p.execute_command("EVENT", "contended", sa if i % 2 else sb, 1)
        p.execute()

    threads = [threading.Thread(target=hammer, args=(300,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ok(hist(r, "contended") == ("online", {sa: f32(600), sb: f32(600)}),
       "1,200 events on one user from 4 connections at once: every one applied")
    ok(r.execute_command("SEGMENTS", "contended", "COUNT", 10)[1] == foldin(r, {sa: 600, sb: 600})[1],
       "and the vector is the one its final history gives")

    # FORGET: gone from every reply.
    victim = M.user_ids[3]
    seeds = M.user_ids[20:40]
    ok(victim in everyone(r, sa, n_users + 10), "before FORGET the user is in AUDIENCE")
    ok(r.execute_command("FORGET", victim) == "OK", "FORGET: +OK")

    def gone(user, when):
        checks = {
            "SEGMENTS": r.execute_command("SEGMENTS", user, "COUNT", 3)[0] == "prior",
            "SCORE": r.execute_command("SCORE", user, sa)[0] == "prior",
            "HISTORY": hist(r, user) == ("none", {}),
            "EXPLAIN": "unknown user" in err(lambda: r.execute_command("EXPLAIN", user, sa)),
            "EXISTS": r.execute_command("EXISTS", f"u:{user}") == 0,
            "TYPE": r.execute_command("TYPE", f"u:{user}") == "none",
            "ZSCORE u:": r.execute_command("ZSCORE", f"u:{user}", sa) is None,
            "ZSCORE s:": r.execute_command("ZSCORE", f"s:{sa}", user) is None,
            "ZRANGE u:": r.execute_command("ZRANGE", f"u:{user}", 0, -1) == [],
            "AUDIENCE": user not in everyone(r, sa, n_users + 10),
            "ZRANGE s:": user not in set(r.execute_command("ZRANGE", f"s:{sa}", 0, -1)),
            "ZRANGEBYSCORE s:": user not in set(r.execute_command("ZRANGEBYSCORE", f"s:{sa}", "-inf", "+inf")),
            "LOOKALIKE": user not in set(r.execute_command("LOOKALIKE", "COUNT", n_users, *seeds)[::2]),
            "LOOKALIKE seed": "none of the" in err(lambda: r.execute_command("LOOKALIKE", "COUNT", 5, user)),
        }
        bad = [k for k, v in checks.items() if not v]
        ok(not bad, f"{when}: {user} appears in no reply ({len(checks)} commands){' but ' + str(bad) if bad else ''}")

    reach_before = r.execute_command("REACH", sa, "MIN", -1e30)
    gone(victim, "after FORGET")
    card = r.execute_command("ZCARD", f"s:{sa}")
    ok(card == n_users + 2 - 1, f"ZCARD s: counts model users - forgotten + online (new-1, contended) ({card})")
    ok(r.execute_command("DEL", f"u:{M.user_ids[4]}", "u:nobody-at-all", "plainkey") == 1,
       "DEL counts the users that existed")
    ok(r.execute_command("UNLINK", f"u:{M.user_ids[4]}") == 0, "UNLINK of a forgotten user: 0")
    ok("cannot be deleted" in err(lambda: r.execute_command("DEL", f"s:{sa}")), "DEL s:<segment> is refused")
    ok(r.execute_command("REACH", sa, "MIN", -1e30) == reach_before - 1, "REACH counts one user fewer")
    gone(M.user_ids[4], "after DEL")
    # A forgotten user who engages again starts from nothing.
    r.execute_command("EVENT", M.user_ids[5], sb, 1)
    r.execute_command("FORGET", M.user_ids[5])
    r.execute_command("EVENT", M.user_ids[5], sc, 2)
    ok(hist(r, M.user_ids[5]) == ("online", {sc: f32(2)}), "after FORGET, new events start a new history")
    r.execute_command("FORGET", M.user_ids[5])

    # MODEL RELOAD, then a SIGKILL and restart: still gone, still there.
    ok(r.execute_command("MODEL", "RELOAD") == "OK", "MODEL RELOAD")
    gone(victim, "after MODEL RELOAD")
    ok(hist(r, "new-1") == ("online", {sa: f32(2), sb: f32(5)}) and hist(r, u7) == ("online", want),
       "online users carry over to the reloaded model")
    srv.stop(signal.SIGKILL)
    srv = Server(path, *flags, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
    gone(victim, "after SIGKILL and restart")
    gone(M.user_ids[5], "after SIGKILL and restart")
    ok(hist(r, "new-1") == ("online", {sa: f32(2), sb: f32(5)}) and hist(r, u7) == ("online", want),
       "online users are replayed from the journal")
    ok(r.execute_command("SEGMENTS", u7, "COUNT", 10)[1] == foldin(r, want)[1], "with the same vectors")
    info = r.info("persistence")
    ok(info["journal_start_records"] >= 12 and info["journal_status"] == "ok", "INFO persistence: records replayed")

    # Compaction: the events a FORGET erased leave the file.
    before = Journal(J)
    f5 = max(x["seq"] for x in before.records if x["type"] == "forget" and x["user"] == M.user_ids[5])
    ok(any(x["type"] == "event" and x["user"] == M.user_ids[5] for x in before.records),
       "before compaction the journal still holds the forgotten user's events")
    ok(r.execute_command("JOURNAL", "COMPACT") == "Background journal compaction started", "JOURNAL COMPACT")
    deadline = time.monotonic() + 10
    while r.info("persistence")["journal_compactions"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    after = Journal(J)
    forgets = [x for x in after.records if x["type"] == "forget"]
    ok(not any(x["user"] in (victim, M.user_ids[4], M.user_ids[5]) and x["type"] == "event" and x["seq"] < f5
               for x in after.records), "after compaction no event of a forgotten user remains before its FORGET")
    ok(len(forgets) == len({x["user"] for x in forgets}), "one FORGET per user remains (it hides older copies)")
    ok(after.id == before.id and [x["seq"] for x in after.records] == sorted(x["seq"] for x in after.records),
       "the journal keeps its id and its order")
    gone(victim, "after compaction")

    # starling train --journal: the online events in, the forgotten users out.
    last = r.info("persistence")["journal_last_seq"]
    m2 = os.path.join(d, "m2.model")
    out = starling("train", ev, "--journal", J, "-o", m2, *[a for a in train_args if a != "-q"])
    M2 = Model(m2)
    ok(victim not in M2.user_ids and M.user_ids[4] not in M2.user_ids and M.user_ids[5] not in M2.user_ids,
       "the model trained with --journal holds no forgotten user")
    i_new = M2.user_index("new-1") if "new-1" in M2.user_ids else None
    ok(i_new is not None and model_hist(M2, i_new) == {sa: f32(2), sb: f32(5)},
       "and holds the online events, weighted by its own kind weights")
    ok(f"journal_seq={last}" in M2.meta, f"its META records the journal position (seq {last})")
    ok(r.execute_command("MODEL", "RELOAD", m2) == "OK", "MODEL RELOAD of the new model")
    ok(hist(r, "new-1") == ("model", {sa: f32(2), sb: f32(5)}),
       "the records it holds are not applied a second time")
    gone(victim, "after reloading the model trained with the journal")
    r.execute_command("EVENT", "new-1", sa, 1)
    ok(hist(r, "new-1") == ("online", {sa: f32(3), sb: f32(5)}), "later records apply on top of it")
    srv.stop(signal.SIGKILL)
    shutil.copy(m2, path)
    srv = Server(path, *flags, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
    ok(hist(r, "new-1") == ("online", {sa: f32(3), sb: f32(5)}) and r.info("persistence")["records_already_in_model"] > 0,
       "and after a restart on it, the same")
    gone(victim, "after a restart on the new model")
    srv.stop()

    # Each policy keeps what it acknowledged across a SIGKILL (the kernel has
    # it); they differ on power loss (docs/OPERATIONS.md).
    for policy in ("everysec", "no"):
        jp = os.path.join(d, f"{policy}.journal")
        s1 = Server(path, "--journal", jp, "--appendfsync", policy, d=d)
        c = redis.Redis(host="127.0.0.1", port=s1.port, decode_responses=True, socket_timeout=10)
        p = c.pipeline(transaction=False)
        for i in range(200):
            p.execute_command("EVENT", f"p-{i % 20}", M.segment_ids[i % 7], 1)
        p.execute_command("FORGET", "p-3")
        acked = p.execute()
        s1.stop(signal.SIGKILL)
        s1 = Server(path, "--journal", jp, "--appendfsync", policy, d=d)
        c = redis.Redis(host="127.0.0.1", port=s1.port, decode_responses=True, socket_timeout=10)
        total = sum(sum(hist(c, f"p-{i}")[1].values()) for i in range(20))
        ok(all(a == "OK" for a in acked) and total == 190 and hist(c, "p-3")[0] == "none",
           f"appendfsync {policy}: 201 acknowledged writes all there after a SIGKILL")
        ok(c.config_get("appendfsync")["appendfsync"] == policy and c.config_get("appendonly")["appendonly"] == "yes",
           f"CONFIG GET appendfsync {policy}")
        s1.stop()

    # An int8 model (starling quantize): model users are read dequantized,
    # online users solved in float, look-alikes from both.
    q8 = os.path.join(d, "q8.model")
    starling("quantize", m2, "-o", q8)
    Q = Model(q8)
    s3 = Server(q8, "--journal", os.path.join(d, "q8.journal"), "--min-audience", 0, "--min-seeds", 0, d=d)
    c = redis.Redis(host="127.0.0.1", port=s3.port, decode_responses=True, socket_timeout=10)
    base = model_hist(Q, 11)
    c.execute_command("EVENT", Q.user_ids[11], sa, 2)
    base[sa] = f32(float(base.get(sa, 0)) + 2)
    ok(hist(c, Q.user_ids[11]) == ("online", base) and
       c.execute_command("SEGMENTS", Q.user_ids[11], "COUNT", 10)[1] == foldin(c, base)[1],
       "int8 model: an event re-solves a model user from their history, as FOLDIN does")
    c.execute_command("FORGET", Q.user_ids[12])
    la = c.execute_command("LOOKALIKE", "COUNT", len(Q.user_ids), *Q.user_ids[30:40])
    ok(Q.user_ids[12] not in la[::2] and Q.user_ids[11] in la[::2] and len(la) == 2 * (len(Q.user_ids) - 11),
       "int8 model: LOOKALIKE covers every user but the seeds and the forgotten one")
    s3.stop()

    # Privacy floors, at their defaults; and no journal, no writes.
    s2 = Server(path, d=d)
    c = redis.Redis(host="127.0.0.1", port=s2.port, decode_responses=True, socket_timeout=10)
    top = c.execute_command("AUDIENCE", sa, "COUNT", 200)
    ok(len(top) == 400, "AUDIENCE of the whole user base: allowed")
    thr = top[2 * 50 + 1]
    ok("privacy floor of 100" in err(lambda: c.execute_command("AUDIENCE", sa, "COUNT", 10, "MIN", thr)),
       "AUDIENCE of 51 users: refused (the floor of 100)")
    ok("privacy floor of 100" in err(lambda: c.execute_command("REACH", sa, "MIN", thr)), "REACH of 51: refused")
    ok(c.execute_command("REACH", sa, "MIN", top[2 * 150 + 1]) >= 151, "REACH of 151: disclosed")
    ok("privacy floor" in err(lambda: c.execute_command("ZRANGEBYSCORE", f"s:{sa}", thr, "+inf")),
       "ZRANGEBYSCORE s: of 51 users: refused")
    ok("privacy floor" in err(lambda: c.execute_command("ZCOUNT", f"s:{sa}", thr, "+inf")), "ZCOUNT s: refused")
    ok("look-alikes need at least 100" in err(lambda: c.execute_command("LOOKALIKE", "COUNT", 200, *M.user_ids[:99])),
       "LOOKALIKE of 99 seeds: refused (min-seeds)")
    ok("privacy floor of 100" in err(lambda: c.execute_command("LOOKALIKE", "COUNT", 20, *M.user_ids[:120])),
       "20 look-alikes: refused (min-audience)")
    ok(len(c.execute_command("LOOKALIKE", "COUNT", 100, *M.user_ids[:120])) == 200, "100 look-alikes of 120 seeds")
    ok("no journal" in err(lambda: c.execute_command("EVENT", "x", sa, 1)), "EVENT without a journal is refused")
    ok("no journal" in err(lambda: c.execute_command("FORGET", "x")), "FORGET without a journal is refused")
    s2.stop()
    note(out.strip().splitlines()[-1] if out.strip() else "")
done()
