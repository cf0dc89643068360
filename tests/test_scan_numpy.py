#!/usr/bin/python3
"""The one-pass scans (scan.c) checked against numpy, computed independently:
every score in the very summation order of starling's dot product (eight
lanes, lane j summing elements j, j+8, ..., then ((l0+l4)+(l1+l5)) +
((l2+l6)+(l3+l7)), all in float32), so `starling audience` over float32 and
int8 models, on one and two threads, must give the same users, the same
score bits, the same counts and the same reach curve, ties broken by the
lower user index. LOOKALIKE's query is a solve (the seeds folded in as a
segment against U^T U): numpy solves it here from its definition in float64
(oracle.lookalike),
starling in float32, so its scores are compared within 1e-5."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
import oracle  # noqa: E402
from oracle import close  # noqa: E402
from serve import Server  # noqa: E402
from starling import Model  # noqa: E402
from starling import _kernels as K  # noqa: E402
from tap import STARLING, done, ok, skip, starling  # noqa: E402

try:
    import redis
except ImportError:
    redis = None


def dot_rows(U, x):
    """starling's st_dot of every row of U with x, in float32."""
    P = U.astype(np.float32) * x.astype(np.float32)
    m, k = P.shape
    acc = np.zeros((m, 8), np.float32)
    full = k // 8 * 8
    for g in range(0, full, 8):
        acc += P[:, g:g + 8]
    for j, i in enumerate(range(full, k)):
        acc[:, j] += P[:, i]
    a = acc
    return ((a[:, 0] + a[:, 4]) + (a[:, 1] + a[:, 5])) + ((a[:, 2] + a[:, 6]) + (a[:, 3] + a[:, 7]))


def best(scores, n, skip=()):
    """Indices of the n best scores, ties by the lower index; NaN never."""
    idx = np.arange(len(scores))
    keep = ~np.isnan(scores)
    if len(skip):
        keep[list(skip)] = False
    order = np.lexsort((idx[keep], -scores[keep]))
    return idx[keep][order][:n]


def lines(text):
    out = []
    for line in text.splitlines():
        u, s = line.split("\t")
        out.append((u, s))
    return out


with tempfile.TemporaryDirectory() as d:
    rng = np.random.default_rng(17)
    m, n, k = 40000, 30, 21  # k: a tail of five past the eight lanes, and of five past 16 int8 columns
    U = (rng.standard_normal((m, k)) * 0.3).astype(np.float32)
    U[1::9] = U[0::9][: len(U[1::9])]  # repeated rows: exact ties whatever the segment
    V = (rng.standard_normal((n, k)) * 0.3).astype(np.float32)
    np.save(os.path.join(d, "u.npy"), U)
    np.save(os.path.join(d, "v.npy"), V)
    users = [f"u{i:06d}" for i in range(m)]
    open(os.path.join(d, "u.txt"), "w").write("\n".join(users) + "\n")
    open(os.path.join(d, "v.txt"), "w").write("\n".join(f"s{i:03d}" for i in range(n)) + "\n")
    f32, i8 = os.path.join(d, "f32.model"), os.path.join(d, "i8.model")
    starling("import", "--user-factors", os.path.join(d, "u.npy"), "--user-ids", os.path.join(d, "u.txt"),
             "--segment-factors", os.path.join(d, "v.npy"), "--segment-ids", os.path.join(d, "v.txt"), "-o", f32)
    starling("quantize", f32, "-o", i8)
    for path, kind in ((f32, "float32"), (i8, "int8")):
        M = Model(path)
        Uf = M.U.astype(np.float32)  # int8: the rows dequantized as starling does
        ok(M.header["prior_weight"] == 0, f"{kind}: imported factors have no prior blend")
        for threads in (1, 2):
            t = ["-t", threads]
            good = True
            for s in (3, 17):
                sc = dot_rows(Uf, V[s]) + np.float32(0)
                want = [(users[i], f"{sc[i]:.9g}") for i in best(sc, 1000)]
                got = lines(starling("audience", path, "--segment", f"s{s:03d}", "-n", 1000, *t))
                good &= got == want
                thr = np.float32(sc[best(sc, 1000)[-1]])
                got = int(starling("audience", path, "--segment", f"s{s:03d}", "--reach", "--min", repr(float(thr)), *t))
                good &= got == int((sc >= thr).sum())
                got = lines(starling("audience", path, "--segment", f"s{s:03d}", "-n", 50, "--min", repr(float(thr)), *t))
                good &= got == want[:50]
            ok(good, f"{kind}, {threads} thread(s): AUDIENCE top 1000, REACH and AUDIENCE MIN equal numpy's, bit for bit")
            seeds = [int(i) for i in rng.choice(m, 150, replace=False)]
            v = oracle.lookalike(M, seeds).astype(np.float32)
            sc = dot_rows(Uf, v)
            want = [(users[i], float(sc[i])) for i in best(sc, 700, skip=seeds)]
            got = [(u, float(x)) for u, x in lines(starling("audience", path, "--seeds",
                                                            ",".join(users[i] for i in seeds), "-n", 700, *t))]
            ok(close(got, want), f"{kind}, {threads} thread(s): LOOKALIKE of 150 seeds equals numpy's solve within "
                                 "1e-5 (the same users up to ties within it), seeds left out")
            if threads == 1:
                kv = K.lookalike_query(M.header, M.m, M.GU, Uf[sorted(seeds)])
                ok(np.abs(kv - v).max() <= 1e-6 * np.abs(v).max(),
                   f"{kind}: the Python reader's query equals np.linalg.solve's (largest difference "
                   f"{np.abs(kv - v).max():.2g})")
            sc = dot_rows(Uf, V[5]) + np.float32(0)
            ts = [-1.0, 0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, float(sc.max())]
            out = starling("audience", path, "--segment", "s005", "--curve", ",".join(repr(x) for x in ts), *t)
            got = [line.split("\t")[1] for line in out.splitlines()]
            want = []
            for x in ts:
                cnt = int((sc >= np.float32(x)).sum())
                want.append(str(cnt) if cnt >= 100 else "withheld")
            ok(got == want, f"{kind}, {threads} thread(s): the reach curve in one pass equals numpy's counts, "
                            f"those under 100 withheld ({', '.join(got)})")
    # The server's AUDIENCE, REACH and LOOKALIKE run the same scans, split as --scan-threads says.
    M = Model(i8)
    Uf = M.U.astype(np.float32)
    sc = dot_rows(Uf, V[7]) + np.float32(0)
    order = best(sc, 500)
    seeds = [int(i) for i in rng.choice(m, 120, replace=False)]
    lsc = dot_rows(Uf, oracle.lookalike(M, seeds).astype(np.float32))
    lorder = best(lsc, 300, skip=seeds)
    if redis is None:
        skip("the server's scans equal numpy's", "needs python3-redis")
    else:
        for threads in (1, 2):
            srv = Server(i8, "--scan-threads", threads, d=d)
            r = redis.Redis(host="127.0.0.1", port=srv.port)
            a = r.execute_command("AUDIENCE", "s007", "COUNT", 500)
            got = [(a[i].decode(), np.float32(float(a[i + 1]))) for i in range(0, len(a), 2)]
            good = got == [(users[i], sc[i]) for i in order]
            good &= r.execute_command("REACH", "s007", "MIN", repr(float(sc[order[-1]]))) == 500
            la = r.execute_command("LOOKALIKE", "COUNT", 300, *[users[i] for i in seeds])
            good &= close([(la[i].decode(), float(la[i + 1])) for i in range(0, len(la), 2)],
                          [(users[i], float(lsc[i])) for i in lorder])
            ok(good, f"int8 model served with --scan-threads {threads}: AUDIENCE and REACH equal numpy's, "
                     "LOOKALIKE within 1e-5")
            srv.stop()
    # REACH seg CURVE: every threshold's count from one pass, withheld (nil) under the floor, as
    # REACH refuses; then with a user forgotten and another changed online, as REACH MIN counts.
    if redis is None:
        skip("REACH CURVE equals numpy's counts", "needs python3-redis")
    else:
        above = float(np.nextafter(sc[order[99]], np.float32(np.inf)))  # under 100 users reach it
        ts = [-1.0, 0.0, 0.1, 0.3, float(sc[order[99]]), above, float(sc.max()), 5.0]
        srv = Server(i8, "--scan-threads", 2, "--journal", os.path.join(d, "curve.journal"), d=d)
        r = redis.Redis(host="127.0.0.1", port=srv.port)
        got = r.execute_command("REACH", "s007", "CURVE", *map(repr, ts))
        want = [int((sc >= np.float32(x)).sum()) for x in ts]
        ok(got == [w if w >= 100 else None for w in want] and want[4] >= 100 and got[5] is None,
           f"REACH CURVE: numpy's counts at 8 thresholds in one reply, those under 100 nil ({got})")
        top = users[order[0]]
        r.execute_command("FORGET", top)
        r.execute_command("EVENT", users[order[-1]], "s007", 50)
        got = r.execute_command("REACH", "s007", "CURVE", *map(repr, ts[:5]))
        each = []
        for x in ts[:5]:
            try:
                each.append(r.execute_command("REACH", "s007", "MIN", repr(x)))
            except redis.ResponseError:
                each.append(None)
        ok(got == each and got[0] == want[0] - 1,
           f"REACH CURVE after FORGET and EVENT: the counts REACH MIN gives one at a time ({got})")
        errs = []
        for args in (("s007", "CURVE", "x"), ("s007", "CURVE", *["0.1"] * 1025), ("s007", "CURVE"),
                     ("s007", "MIN", "0.1", "0.2"), ("nope", "CURVE", "0.1")):
            try:
                r.execute_command("REACH", *args)
                errs.append(None)
            except redis.ResponseError as e:
                errs.append(str(e))
        ok(errs[0] == "a CURVE threshold is not a valid number" and "at most 1024" in errs[1]
           and "wrong number of arguments" in errs[2] and "syntax" in errs[3] and "unknown segment" in errs[4],
           f"REACH CURVE refuses a bad threshold, too many, none, and REACH MIN extra arguments ({errs})")
        srv.stop()
    bad = subprocess.run([STARLING, "serve", i8, "--scan-threads", "-1"], capture_output=True, text=True)
    ok(bad.returncode == 2 and "--scan-threads" in bad.stderr, "serve --scan-threads -1 is refused with a reason")
done()
