#!/usr/bin/python3
"""The server's commands through a real client (python3-redis), checked
against numpy computations on the model file read independently
(the starling package, python/): SEGMENTS, SCORE, FOLDIN, AUDIENCE, LOOKALIKE, REACH,
SIMILAR, EXPLAIN, the popularity prior, the housekeeping commands, INFO,
errors, and 10,000 pipelined requests answered in order.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
try:
    import numpy as np
    import redis
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (install python3-redis and python3-numpy: scripts/deps.sh test)")
    sys.exit(0)
from serve import Server, make_model  # noqa: E402
import oracle  # noqa: E402
from starling import Model  # noqa: E402
from tap import done, ok  # noqa: E402


def err(f):
    """The error message f() got, or None."""
    try:
        f()
    except redis.ResponseError as e:
        return str(e)
    return None


def top(scores, k):
    """Indices of the k best scores, ties by lower index (as the server)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64)))
    return [int(i) for i in order[:k]]


def pairs(flat):
    return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]


def foldin(M, segs, r):
    """numpy fold-in with the model's log confidence, exact solve: the
    system W, the confidences c and the row."""
    return oracle.foldin(M, segs, r)


with tempfile.TemporaryDirectory() as d:
    path, ev = make_model(d)
    M = Model(path)
    assert M.header["confidence"] == 1, "the numpy checks assume the log confidence scheme"
    # Exact comparisons with numpy on audiences of a few users: no privacy
    # floors here (tests/test_journal_serve.py checks them).
    srv = Server(path, "--unixsocket", os.path.join(d, "s.sock"), "--min-audience", 0, "--min-seeds", 0, d=d)
    # rc parses replies the usual redis-py way; r shows them as they come.
    rc = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
    r.response_callbacks.clear()
    seg_id = {s: i for i, s in enumerate(M.segment_ids)}
    u = 7
    user = M.user_ids[u]
    x = M.U[u].astype(np.float64)
    V = M.V.astype(np.float64)

    # Housekeeping.
    ok(rc.ping() is True and r.execute_command("PING") == "PONG", "PING")
    ok(r.execute_command("PING", "hi") == "hi", "PING message")
    ok(rc.echo("x y") == "x y", "ECHO")
    ok(r.execute_command("SELECT", 0) == "OK", "SELECT 0")
    ok(err(lambda: r.execute_command("SELECT", 1)) == "DB index is out of range", "SELECT 1 is an error")
    ok(rc.client_setname("adserver-7") is True and rc.client_getname() == "adserver-7", "CLIENT SETNAME / GETNAME")
    ok("cannot contain spaces" in err(lambda: r.execute_command("CLIENT", "SETNAME", "a b")), "CLIENT SETNAME checks")
    ok(isinstance(r.execute_command("CLIENT", "ID"), int), "CLIENT ID")
    hello = r.execute_command("HELLO", "2")
    hd = dict(zip(hello[::2], hello[1::2]))
    ok(hd["proto"] == 2 and hd["server"] == "starling", "HELLO 2 answers in RESP2")
    ok("NOPROTO unsupported protocol version" in err(lambda: r.execute_command("HELLO", "4")), "HELLO 4 is refused (NOPROTO)")
    ok("without any password configured" in err(lambda: r.execute_command("AUTH", "x")), "AUTH with no password set")
    n = r.execute_command("COMMAND", "COUNT")
    cmds = r.execute_command("COMMAND")
    ok(n == len(cmds) and n >= 25, f"COMMAND lists {n} commands")
    names = {c[0] for c in cmds}
    ok({"segments", "score", "foldin", "audience", "lookalike", "reach", "similar", "explain", "model",
        "zrange", "zrevrange", "zrangebyscore", "zrevrangebyscore", "zscore", "zmscore", "zcount", "zcard",
        "exists", "type", "ping", "echo", "quit", "auth", "hello", "select", "client", "command", "config",
        "info"} <= names, "COMMAND names every command")
    zr = [c for c in cmds if c[0] == "zrevrange"][0]
    ok(zr[1] == -4 and zr[3] == 1 and zr[4] == 1 and zr[5] == 1, "COMMAND: arity and key position (for proxies)")
    docs = r.execute_command("COMMAND", "DOCS")
    ok(len(docs) == 2 * n and "summary" in docs[1], "COMMAND DOCS: a flat map of name -> doc fields")
    cfg = r.execute_command("CONFIG", "GET", "port")
    ok(cfg == ["port", str(srv.port)], "CONFIG GET port")
    ok("requirepass" not in r.execute_command("CONFIG", "GET", "*"), "CONFIG GET * never shows requirepass")

    # SCORE: one dot product per segment, nil for an unknown one.
    segs = [M.segment_ids[3], "no-such-segment", M.segment_ids[40]]
    src, sc = r.execute_command("SCORE", user, *segs)
    ok(src == "model" and sc[1] is None, "SCORE: model source, nil for an unknown segment")
    ok(abs(float(sc[0]) - x @ V[3]) < 1e-4 and abs(float(sc[2]) - x @ V[40]) < 1e-4, "SCORE equals U[u].V[s]")

    # SEGMENTS.
    src, flat = r.execute_command("SEGMENTS", user, "COUNT", 10)
    want = top(M.U[u] @ M.V.T, 10)
    ok(src == "model" and [p[0] for p in pairs(flat)] == [M.segment_ids[i] for i in want], "SEGMENTS top 10 = numpy")
    ok(all(abs(s - x @ V[seg_id[g]]) < 1e-4 for g, s in pairs(flat)), "SEGMENTS scores")
    cutoff = pairs(flat)[4][1]
    _, f2 = r.execute_command("SEGMENTS", user, "COUNT", 10, "MIN", cutoff)
    ok(len(f2) == 10 and pairs(f2)[-1][1] >= cutoff, "SEGMENTS MIN keeps scores >= MIN")
    ex = [pairs(flat)[0][0], pairs(flat)[2][0]]
    _, f3 = r.execute_command("SEGMENTS", user, "COUNT", 8, "EXCLUDE", *ex)
    ok([p[0] for p in pairs(f3)] == [p[0] for p in pairs(flat) if p[0] not in ex], "SEGMENTS EXCLUDE")
    only = [M.segment_ids[i] for i in (5, 50, 100, 5)] + ["nope"]
    _, f4 = r.execute_command("SEGMENTS", user, "ONLY", *only, "COUNT", 5)
    ow = sorted({5, 50, 100}, key=lambda i: (-(M.U[u] @ M.V[i]), i))
    ok([p[0] for p in pairs(f4)] == [M.segment_ids[i] for i in ow], "SEGMENTS ONLY (duplicates and unknowns ignored)")
    _, f5 = r.execute_command("SEGMENTS", user, "COUNT", 300, "UNSEEN")
    seen = set(M.hist_idx[M.hist_ptr[u]:M.hist_ptr[u + 1]].tolist())
    ok(len(f5) == 2 * (300 - len(seen)) and not any(seg_id[p[0]] in seen for p in pairs(f5)), "SEGMENTS UNSEEN")
    ok("no calibration" in err(lambda: r.execute_command("SEGMENTS", user, "CALIBRATED")),
       "SEGMENTS CALIBRATED on an uncalibrated model is an error")
    ok("syntax error" in err(lambda: r.execute_command("SEGMENTS", user, "BOGUS")), "SEGMENTS syntax error")
    ok("COUNT" in err(lambda: r.execute_command("SEGMENTS", user, "COUNT", -1)), "SEGMENTS COUNT -1")

    # Unknown users get the popularity prior, marked as such.
    src, fp = r.execute_command("SEGMENTS", "never-seen-user", "COUNT", 5)
    prior = np.log1p(M.popularity.astype(np.float64)) / np.log1p(M.popularity.max())
    ok(src == "prior" and [p[0] for p in pairs(fp)] == [M.segment_ids[i] for i in top(prior, 5)],
       "unknown user: 'prior', segments ranked by users per segment")
    ok(abs(pairs(fp)[0][1] - prior[top(prior, 1)[0]]) < 1e-6, "prior score = log(1 + users) / log(1 + most users)")
    src, sp = r.execute_command("SCORE", "never-seen-user", M.segment_ids[3])
    ok(src == "prior" and abs(float(sp[0]) - prior[3]) < 1e-6, "SCORE for an unknown user: the prior")

    # FOLDIN against numpy's exact solve.
    fs, fr = [M.segment_ids[10], M.segment_ids[20], M.segment_ids[10]], [2.0, 1.0, 1.0]
    src, ff = r.execute_command("FOLDIN", "COUNT", 5, fs[0], 2, fs[1], 1, fs[2], 1, "unknown-seg", 9)
    _, _, xf = foldin(M, [10, 20], [3.0, 1.0])
    fw = top(M.V @ xf, 5)
    ok(src == "foldin" and [p[0] for p in pairs(ff)] == [M.segment_ids[i] for i in fw],
       "FOLDIN top segments = numpy fold-in (repeats summed, unknown segment ignored)")
    ok(all(abs(s - V[seg_id[g]] @ xf) < 1e-3 for g, s in pairs(ff)), "FOLDIN scores")
    src, _ = r.execute_command("FOLDIN", "nope", 1)
    ok(src == "prior", "FOLDIN of only unknown segments falls back to the prior")
    ok("not a number" in err(lambda: r.execute_command("FOLDIN", fs[0], "-1")), "FOLDIN negative weight")
    ok("pairs" in err(lambda: r.execute_command("FOLDIN", fs[0], 1, fs[1])), "FOLDIN odd arguments")

    # EXPLAIN: contributions c_i v_s^T W^-1 v_i that add up to the fold-in score.
    hs = M.hist_idx[M.hist_ptr[u]:M.hist_ptr[u + 1]].astype(int)
    hr = M.hist_val[M.hist_ptr[u]:M.hist_ptr[u + 1]]
    s_ex = want[0]
    W, conf, xh = foldin(M, hs, hr)
    contrib = conf * (V[hs] @ np.linalg.solve(W, V[s_ex]))
    total, ep = r.execute_command("EXPLAIN", user, M.segment_ids[s_ex], "COUNT", 3)
    ok(abs(float(total) - V[s_ex] @ xh) < 1e-3 and abs(contrib.sum() - V[s_ex] @ xh) < 1e-6,
       "EXPLAIN total = fold-in score of the user's history")
    cw = [int(hs[i]) for i in top(contrib, 3)]
    ok([p[0] for p in pairs(ep)] == [M.segment_ids[i] for i in cw], "EXPLAIN: the top contributing past segments")
    ok("no history" in err(lambda: r.execute_command("EXPLAIN", "never-seen-user", M.segment_ids[0])),
       "EXPLAIN of an unknown user")

    # Heavy commands.
    s = 11
    au = r.execute_command("AUDIENCE", M.segment_ids[s], "COUNT", 5)
    us = M.U @ M.V[s]
    ok([p[0] for p in pairs(au)] == [M.user_ids[i] for i in top(us, 5)], "AUDIENCE = numpy top users")
    thr = float(np.sort(us)[-30])
    ok(r.execute_command("REACH", M.segment_ids[s], "MIN", repr(thr)) == int((us >= np.float32(thr)).sum()),
       "REACH = numpy count")
    au2 = r.execute_command("AUDIENCE", M.segment_ids[s], "COUNT", 100, "MIN", repr(thr))
    ok(len(au2) == 2 * int((us >= np.float32(thr)).sum()), "AUDIENCE MIN")
    seeds = [M.user_ids[i] for i in (1, 2, 3)] + ["ghost"]
    la = r.execute_command("LOOKALIKE", "COUNT", 5, *seeds)
    ls = M.U.astype(np.float64) @ oracle.lookalike(M, [1, 2, 3])
    ls[[1, 2, 3]] = -np.inf
    ok([p[0] for p in pairs(la)] == [M.user_ids[i] for i in top(ls, 5)] and
       all(abs(float(sc) - ls[M.user_index(n)]) < 1e-4 for n, sc in pairs(la)),
       "LOOKALIKE = numpy's users and scores for the seeds folded in as a segment")
    ok("none of the" in err(lambda: r.execute_command("LOOKALIKE", "COUNT", 5, "ghost")), "LOOKALIKE unknown seeds")
    ok("unknown segment" in err(lambda: r.execute_command("AUDIENCE", "nope", "COUNT", 5)), "AUDIENCE unknown segment")
    ok("COUNT" in err(lambda: r.execute_command("AUDIENCE", M.segment_ids[s], "COUNT", 10 ** 9)), "AUDIENCE COUNT limit")
    si = r.execute_command("SIMILAR", M.segment_ids[s], "COUNT", 4)
    _W, _c, xs = foldin(M, [s], [M.header["eps"]])
    cs = V @ xs + M.blend()
    cs[s] = -np.inf
    ok([p[0] for p in pairs(si)] == [M.segment_ids[i] for i in top(cs, 4)],
       "SIMILAR = numpy's ranking for a user folded in from that segment alone")
    ok(all(abs(float(sc) - cs[M.segment_index(n)]) < 1e-4 for n, sc in pairs(si)), "SIMILAR's scores likewise")

    # MODEL.
    mi = r.execute_command("MODEL", "INFO")
    md = dict(zip(mi[::2], mi[1::2]))
    ok(md["users"] == 2000 and md["segments"] == 300 and md["factors"] == 16 and md["generation"] == 1, "MODEL INFO")
    # Its array holds every pair it sends: the reply after it, in a pipeline, is the next command's.
    pipe = r.pipeline(transaction=False)
    pipe.execute_command("MODEL", "INFO")
    pipe.execute_command("PING")
    mi2, pong = pipe.execute()
    last_meta = "meta." + M.meta.rstrip("\n").split("\n")[-1].split("=")[0]
    ok(pong == "PONG" and len(mi2) == len(mi) and last_meta in md, "MODEL INFO sends what its array length says "
       "(the last META line included; a pipelined PING after it answers PONG)")
    ok("--allow-reload-path" in err(lambda: r.execute_command("MODEL", "RELOAD", "/etc/passwd")),
       "MODEL RELOAD PATH is refused unless an admin option allows it")
    ok("unknown subcommand 'FLY'" in err(lambda: r.execute_command("MODEL", "FLY")), "unknown subcommand")
    ok(len(r.execute_command("MODEL", "HELP")) == 3, "MODEL HELP")
    ok(r.execute_command("MODEL", "RELOAD") == "OK", "MODEL RELOAD of the served path")
    ok(dict(zip(*[iter(r.execute_command("MODEL", "INFO"))] * 2))["generation"] == 2, "generation 2 after reload")

    # Errors name the command.
    ok(err(lambda: r.execute_command("FROB", "a", "b")) ==
       "unknown command 'FROB', with args beginning with: 'a' 'b' ", "unknown command, Redis wording")
    ok(err(lambda: r.execute_command("SCORE", user)) == "wrong number of arguments for 'score' command",
       "wrong arity names the command")
    ok(err(lambda: r.execute_command("REACH", M.segment_ids[0], "MIN", "abc")) == "MIN is not a valid number",
       "bad number")

    # 10,000 pipelined requests, answered in order.
    p = rc.pipeline(transaction=False)
    for i in range(10000):
        if i % 3 == 0:
            p.execute_command("ECHO", f"m{i}")
        elif i % 3 == 1:
            p.execute_command("SCORE", M.user_ids[i % 2000], M.segment_ids[i % 300])
        else:
            p.execute_command("SEGMENTS", M.user_ids[i % 2000], "COUNT", 1)
    res = p.execute()
    good = len(res) == 10000
    for i, v in enumerate(res):
        if i % 3 == 0:
            good &= v == f"m{i}"
        elif i % 3 == 1:
            good &= abs(float(v[1][0]) - float(M.U[i % 2000] @ M.V[i % 300])) < 1e-4
        else:
            good &= v[1][0] == M.segment_ids[top(M.U[i % 2000] @ M.V.T, 1)[0]]
    ok(good, "10,000 pipelined requests (ECHO, SCORE, SEGMENTS) answered in order")

    # INFO.
    info = rc.info("everything")
    ok(all(k in info for k in ("starling_version", "connected_clients", "model_users", "total_commands_processed",
                               "cmdstat_segments", "latency_percentiles_usec_segments")), "INFO sections")
    cs = info["cmdstat_segments"]
    ok(cs["calls"] >= 3334 and cs["failed_calls"] >= 1 and cs["rejected_calls"] == 0, "commandstats: calls, failures")
    lat = info["latency_percentiles_usec_segments"]
    ok(0 < lat["p50"] <= lat["p99"] <= lat["p99.9"], "latency percentiles p50 <= p99 <= p99.9")
    ok(set(rc.info("model")) == {k for k in info if k.startswith("model_")}, "INFO model: one section")

    # The Unix socket.
    ru = redis.Redis(unix_socket_path=os.path.join(d, "s.sock"), decode_responses=True)
    ok(ru.execute_command("SCORE", user, M.segment_ids[3])[1] == sc[:1], "the Unix socket answers the same")
    ru.close()

    ok(r.execute_command("QUIT") == "OK", "QUIT")
    r.close()
    rc.close()
    ok(srv.stop() == 0, "SIGTERM: clean exit")
    ok("bye" in srv.text(), "the log says goodbye")
done()
