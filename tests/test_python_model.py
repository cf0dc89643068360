#!/usr/bin/python3
"""The Python package (python/): installed from the checkout without network,
its Model gives the running server's answers.

The package is installed the two ways docs/PYTHON.md gives, into a venv with
the system's site packages (pip --no-build-isolation --no-index) and with
--target; the rest of the test imports the --target copy. Then starling.Model
reads models and a journal and is compared with `starling serve` on the same
files (privacy floors off), through redis-py:
- model users: SEGMENTS (with MIN, ONLY, EXCLUDE, UNSEEN, CALIBRATED), SCORE,
  AUDIENCE, REACH, HISTORY equal the server's float32
  values bit for bit, for a float model with the fitted prior weight and
  calibration, a rank that is not a multiple of 8, and an int8 model;
- FOLDIN, EXPLAIN, SIMILAR and LOOKALIKE (solved in float64 here, float32
  there) within 1e-5, LOOKALIKE also of its definition solved in numpy;
- with the journal of a server that took EVENTs and FORGETs: the online users,
  the forgotten ones and the scans over every user, within 1e-5;
- the model card equals MODEL INFO; errors say what the server says;
- a damaged model file, or a journal damaged before its end, is refused.
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import redis
except ImportError as e:
    print(f"1..0 # SKIP {e} (python3-numpy, python3-redis: scripts/deps.sh test)")
    sys.exit(0)
from serve import Server, make_model  # noqa: E402
import oracle  # noqa: E402
from oracle import close  # noqa: E402
from tap import done, note, ok, skip_all, starling  # noqa: E402

PYDIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python")
TOL = 1e-5


def install(d):
    """Installs the package from a copy of python/ (the checkout stays clean)
    into a venv and into a --target directory; returns the target."""
    src = os.path.join(d, "src")
    shutil.copytree(PYDIR, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = os.path.join(d, "venv")
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], capture_output=True, text=True)
    if r.returncode != 0:
        skip_all(f"python3 -m venv failed (python3-venv missing?): {r.stderr.strip()[:200]}")
    pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--no-build-isolation", "--no-index", "-q"]
    r = subprocess.run(pip + [src], capture_output=True, text=True, cwd=d)
    ok(r.returncode == 0, "pip install --no-build-isolation --no-index ./python into a venv with the system's "
       "packages" + ("" if r.returncode == 0 else f": {r.stderr.strip()[-300:]}"))
    probe = "import starling, numpy; print(starling.__file__); print(starling.__version__)"
    r = subprocess.run([os.path.join(venv, "bin", "python"), "-c", probe], capture_output=True, text=True, cwd=d)
    ok(r.returncode == 0 and r.stdout.startswith(venv), f"the venv imports its installed copy ({r.stdout.split()[:1]})")
    target = os.path.join(d, "target")
    r = subprocess.run(pip + ["--no-deps", "--target", target, src], capture_output=True, text=True, cwd=d)
    ok(r.returncode == 0 and os.path.exists(os.path.join(target, "starling", "model.py")),
       "pip install --target (no network, dependencies from apt)")
    return target


def pairs(flat):
    """A server reply [id, score, ...] as (str, float32 value) pairs."""
    return [(flat[i], float(np.float32(float(flat[i + 1])))) for i in range(0, len(flat), 2)]


def err(f):
    try:
        f()
    except (redis.ResponseError, starling_pkg.StarlingError) as e:
        return str(e)
    return None


def pipelined(r, cmds):
    p = r.pipeline(transaction=False)
    for c in cmds:
        p.execute_command(*c)
    return p.execute()


def check_exact(M, r, label, users):
    """Every answer that involves no solve: bit for bit."""
    n = M.n
    replies = pipelined(r, [("SEGMENTS", u, "COUNT", 20) for u in users])
    bad = [u for u, (src, flat) in zip(users, replies) if M.segments(u, 20) != pairs(flat)
           or M.segments(u, 20).source != src]
    ok(not bad, f"{label}: SEGMENTS COUNT 20 of {len(users)} users equal the server's, scores bit for bit, source "
       f"included" + (f" (differs: {bad[:3]})" if bad else ""))
    u = users[3]
    seen = M.history(u)
    excl = [M.segment_ids[i] for i in (1, 2, 3)]
    only = [M.segment_ids[i] for i in (4, 9, 4, 30)] + ["no-such-segment"]
    cases = [((u, 5, 0.1), ("MIN", 0.1)), ((u, 8, None, None, excl), ("EXCLUDE", *excl)),
             ((u, 3, None, only), ("ONLY", *only)), ((u, n, None, None, None, True), ("UNSEEN",)),
             (("never-seen", 6, 0.2), ("MIN", 0.2)), (("never-seen", 6, None, None, excl), ("EXCLUDE", *excl))]
    same = True
    for args, opts in cases:
        src, flat = r.execute_command("SEGMENTS", args[0], "COUNT", args[1], *opts)
        got = M.segments(*args)
        same &= got == pairs(flat) and got.source == src
    ok(same and len(seen) > 0, f"{label}: SEGMENTS MIN, EXCLUDE, ONLY, UNSEEN, for a user and for the prior")
    segs = [M.segment_ids[i] for i in (0, 7, n - 1)] + ["nope"]
    sc = [r.execute_command("SCORE", x, *segs) for x in (u, "never-seen")]
    ok(all(M.score(x, segs) == [(s, None if v is None else float(np.float32(float(v)))) for s, v in zip(segs, rep[1])]
           and M.score(x, segs).source == rep[0] for x, rep in zip((u, "never-seen"), sc)),
       f"{label}: SCORE (a user, the prior, an unknown segment as None)")
    if M.header["flags"] & 1:
        cal = all(M.segments(x, 7, calibrated=True) == pairs(r.execute_command("SEGMENTS", x, "COUNT", 7, "CALIBRATED")[1])
                  for x in users[:50] + ["never-seen"])
        cal &= M.segments(u, 7, min=0.3, calibrated=True) == \
            pairs(r.execute_command("SEGMENTS", u, "COUNT", 7, "MIN", 0.3, "CALIBRATED")[1])
        s2 = r.execute_command("SCORE", u, *segs[:3], "CALIBRATED")[1]
        cal &= M.score(u, segs[:3], calibrated=True) == [(s, float(np.float32(float(v)))) for s, v in zip(segs, s2)]
        ok(cal, f"{label}: CALIBRATED probabilities (SEGMENTS with and without MIN, SCORE, the prior)")
    aud = pipelined(r, [("AUDIENCE", s, "COUNT", 25) for s in M.segment_ids])
    ok(all(M.audience(s, 25) == pairs(a) for s, a in zip(M.segment_ids, aud)),
       f"{label}: AUDIENCE COUNT 25 of all {n} segments")
    s = M.segment_ids[5]
    thr = M.audience(s, 200)[-1][1]
    ok(M.audience(s, 1000, min=thr) == pairs(r.execute_command("AUDIENCE", s, "COUNT", 1000, "MIN", repr(thr))) and
       M.reach(s, thr) == r.execute_command("REACH", s, "MIN", repr(thr)) >= 200,
       f"{label}: AUDIENCE MIN and REACH at the 200th score ({M.reach(s, thr)} users)")
    hist = pipelined(r, [("HISTORY", x) for x in users[:100]])
    ok(all(M.history(x) == pairs(h[1]) and M.history(x).source == h[0] for x, h in zip(users, hist)),
       f"{label}: HISTORY")


def lookalike_numpy(M, rows, n):
    """LOOKALIKE of the model rows `rows` from its definition
    (oracle.lookalike): every other user scored U_u . v, the best n."""
    sc = M.U.astype(np.float64) @ oracle.lookalike(M, rows)
    sc[sorted(set(rows))] = -np.inf
    top = np.lexsort((np.arange(M.m), -sc))[:n]
    return [(M.user_ids[i], float(sc[i])) for i in top]


def check_lookalike(M, r, label):
    """LOOKALIKE: a solve (float64 here, float32 there) within 1e-5 of the
    server's, and both within 1e-5 of the definition computed in numpy."""
    starts = (0, 40, 500) if M.m > 600 else (0, 40, 80)
    seeds = [list(M.user_ids[i:i + 12]) + ["ghost", M.user_ids[i]] for i in starts]
    look = pipelined(r, [("LOOKALIKE", "COUNT", 30, *sd) for sd in seeds])
    ok(all(close(M.lookalike(sd, 30), pairs(la)) for sd, la in zip(seeds, look)),
       f"{label}: LOOKALIKE within {TOL} of the server's (unknown and repeated seeds ignored)")
    ok(all(close(M.lookalike(sd, 30), lookalike_numpy(M, list(range(i, i + 12)), 30)) for i, sd in zip(starts, seeds)),
       f"{label}: LOOKALIKE within {TOL} of the seeds folded in as a segment, solved in numpy from the definition")


def check_solved(M, r, label, users):
    """FOLDIN, EXPLAIN and SIMILAR: the same solve in float64 here, float32 there."""
    rng = np.random.default_rng(5)
    worst, same = 0.0, True
    for _ in range(30):
        pick = rng.choice(M.n, size=int(rng.integers(1, 8)), replace=False)
        eng = {M.segment_ids[i]: float(rng.integers(1, 20)) for i in pick}
        src, flat = r.execute_command("FOLDIN", "COUNT", 15, *[x for kv in eng.items() for x in kv])
        got = M.foldin(eng, 15)
        same &= close(got, pairs(flat)) and got.source == src
        worst = max(worst, max(abs(a[1] - b[1]) for a, b in zip(got, pairs(flat))))
    ok(same, f"{label}: FOLDIN of 30 random engagements within {TOL} (largest difference {worst:.2g})")
    worst, same = 0.0, True
    for x in users[:40]:
        s = M.segment_ids[int(rng.integers(M.n))]
        total, flat = r.execute_command("EXPLAIN", x, s, "COUNT", 5)
        got = M.explain(x, s, 5)
        same &= close(got, pairs(flat)) and abs(got.total - float(total)) < TOL
        worst = max([worst, abs(got.total - float(total))] + [abs(a[1] - b[1]) for a, b in zip(got, pairs(flat))])
    ok(same, f"{label}: EXPLAIN of 40 users within {TOL} (largest difference {worst:.2g})")
    sim = pipelined(r, [("SIMILAR", s, "COUNT", 10) for s in M.segment_ids])
    ok(all(close(M.similar(s, 10), pairs(x)) for s, x in zip(M.segment_ids, sim)),
       f"{label}: SIMILAR of every segment (a one-segment user folded in) within {TOL}")


def check_card_and_errors(M, r, label):
    info = r.execute_command("MODEL", "INFO")
    server = dict(zip(info[::2], info[1::2]))
    card = M.card()
    numbers = {"final_loss", "alpha", "eps", "lambda", "unobserved_weight", "half_life", "prior_weight", "calib_a",
               "calib_b", "missing_exponent"}
    diff = [k for k in server if k not in ("path", "generation", "loaded_at") and
            (float(server[k]) != card.get(k) if k in numbers else server[k] != card.get(k))]
    ok(not diff and len(card) == len(server) - 2, f"{label}: the model card is MODEL INFO" +
       (f" (differs: {[(k, server[k], card.get(k)) for k in diff[:3]]})" if diff else ""))
    u = M.user_ids[0]
    msgs = [(lambda: M.audience("nope", 3), ("AUDIENCE", "nope", "COUNT", 3)),
            (lambda: M.segments(u, M.n + 1), ("SEGMENTS", u, "COUNT", M.n + 1)),
            (lambda: M.explain("never-seen", M.segment_ids[0]), ("EXPLAIN", "never-seen", M.segment_ids[0])),
            (lambda: M.lookalike(["ghost"], 3), ("LOOKALIKE", "COUNT", 3, "ghost")),
            (lambda: M.reach(M.segment_ids[0], "abc"), ("REACH", M.segment_ids[0], "MIN", "abc")),
            (lambda: M.foldin({M.segment_ids[0]: -1}), ("FOLDIN", M.segment_ids[0], "-1"))]
    got = [(err(f), err(lambda c=c: r.execute_command(*c))) for f, c in msgs]
    ok(all(a is not None and a == b for a, b in got), f"{label}: errors say what the server says" +
       ("" if all(a == b for a, b in got) else f" ({[g for g in got if g[0] != g[1]][:2]})"))


def check_journal(d, path):
    """A server takes online writes into a journal; Model(path, journal) then
    answers as that server does."""
    J = os.path.join(d, "events.journal")
    srv = Server(path, "--journal", J, "--appendfsync", "always", "--min-audience", 0, "--min-seeds", 0, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
    M0 = starling_pkg.Model(path)
    users, segs = list(M0.user_ids), list(M0.segment_ids)
    for i in range(40):  # model users changed, with kinds and times (the model has kind weights and a half-life)
        r.execute_command("EVENT", users[i], segs[(7 * i) % len(segs)], 1 + i % 3, "KIND",
                          ["click", "follow", "impression", "conversion", "other"][i % 5], "TS", 1767000000 + 3600 * i)
    for i in range(10):
        r.execute_command("EVENT", f"new-{i}", segs[i], 2)
        r.execute_command("EVENT", f"new-{i}", segs[i + 20], 1, "KIND", "follow")
    r.execute_command("EVENT", users[50], "a-segment-the-model-lacks", 3)
    r.execute_command("EVENT", users[51], segs[0], 0)
    for u in (users[1], users[60], "new-3"):
        r.execute_command("FORGET", u)
    r.execute_command("EVENT", users[60], segs[4], 2)  # after FORGET: a new history
    M = starling_pkg.Model(path, journal=J)
    changed = users[:70] + [f"new-{i}" for i in range(10)] + ["never-seen"]
    bad = []
    for u in changed:
        src, flat = r.execute_command("SEGMENTS", u, "COUNT", 15)
        got = M.segments(u, 15)
        if got.source != src or not close(got, pairs(flat)):
            bad.append(u)
    ok(not bad, f"journal: SEGMENTS of {len(changed)} users changed online, forgotten, re-created or untouched "
       f"within {TOL}, sources equal" + (f" (differs: {bad[:3]})" if bad else ""))
    ok(M.segments(users[1], 3).source == "prior" and M.history(users[1]).source == "none" and
       M.history(users[60]) == pairs(r.execute_command("HISTORY", users[60])[1]) and
       M.history(users[0]) == pairs(r.execute_command("HISTORY", users[0])[1]),
       "journal: a forgotten user is answered from the prior; histories (kind weights, decay) equal bit for bit")
    aud = all(close(M.audience(s, 40), pairs(r.execute_command("AUDIENCE", s, "COUNT", 40))) for s in segs[:40])
    reach = all(M.reach(s, 0.1) == r.execute_command("REACH", s, "MIN", 0.1) for s in segs[:40])
    everyone = M.audience(segs[0], 10 ** 6)
    ids = {u for u, _ in everyone}
    ok(aud and reach and users[1] not in ids and "new-3" not in ids and "new-0" in ids and
       len(everyone) == len(users) - 1 + 9, "journal: AUDIENCE and REACH count the online users and leave the "
       f"forgotten out ({len(everyone)} users)")
    seeds = users[20:30] + ["new-1", "new-2", users[1]]
    ok(close(M.lookalike(seeds, 50), pairs(r.execute_command("LOOKALIKE", "COUNT", 50, *seeds))),
       "journal: LOOKALIKE with online seeds within 1e-5")
    srv.stop()
    # The journal reader: a torn last record is dropped, damage before the end refused.
    data = open(J, "rb").read()
    torn = os.path.join(d, "torn.journal")
    with open(torn, "wb") as f:
        f.write(data[:-5])
    j = starling_pkg.Journal(torn)
    ok(len(j.records) == len(starling_pkg.Journal(J).records) - 1 and j.torn_bytes > 0,
       "journal: a torn last record is dropped and counted")
    bad = bytearray(data)
    bad[64 + 20] ^= 0xFF
    with open(torn, "wb") as f:
        f.write(bad)
    ok("is damaged" in (err(lambda: starling_pkg.Journal(torn)) or ""), "journal: a damaged first record is refused")


def check_damage(d, path):
    data = open(path, "rb").read()
    cases = {"a flipped byte in SFAC": "checksum mismatch", "a cut file": "truncated", "no magic": "bad magic",
             "a flipped header byte": "header checksum mismatch"}
    fine = True
    for i, (what, want) in enumerate(cases.items()):
        b = bytearray(data)
        if what == "a cut file":
            b = b[:-64]
        elif what == "no magic":
            b[0:8] = b"NOTAMODL"
        elif what == "a flipped header byte":
            b[100] ^= 1
        else:
            off = starling_pkg.Model(path).sections["SFAC"][0]
            b[off + 17] ^= 1
        p = os.path.join(d, f"bad{i}.model")
        with open(p, "wb") as f:
            f.write(b)
        e = err(lambda: starling_pkg.Model(p)) or ""
        fine &= want in e and p in e
    ok(fine, "damaged model files are refused, naming the file and the damage")
    # Whole files (header checksum right) with flags their version does not
    # have: an unknown bit, the linear prior's bit in a version 2 file.
    import struct
    import xxhash
    same = True
    for bit in (8, 4):
        b = bytearray(data)
        flags, = struct.unpack_from("<I", b, 100)
        struct.pack_into("<I", b, 100, flags | bit)
        ns, = struct.unpack_from("<I", b, 12)
        x = xxhash.xxh3_64()
        x.update(bytes(b[:248]))
        x.update(bytes(b[256:256 + ns * 32]))
        struct.pack_into("<Q", b, 248, x.intdigest())
        p = os.path.join(d, f"flags{bit}.model")
        with open(p, "wb") as f:
            f.write(b)
        e = err(lambda: starling_pkg.Model(p)) or ""
        c = subprocess.run([os.environ.get("STARLING", "starling"), "info", p], capture_output=True, text=True).stderr
        same &= f"model flags 0x{flags | bit:x} are not ones format version 2 has" in e and e in c
    ok(same, "flags a version does not have are refused, with the error the C loader gives")


with tempfile.TemporaryDirectory() as d:
    target = install(d)
    sys.path.insert(0, target)
    import starling as starling_pkg  # noqa: E402
    ok(starling_pkg.__file__.startswith(target), "the tests use the installed copy")
    path, ev = make_model(d, validation=None)  # the fitted prior weight and calibration
    M = starling_pkg.Model(path)
    ok(M.header["prior_weight"] > 0 and M.header["flags"] & 1, f"a model with a prior weight "
       f"({M.header['prior_weight']}) and a calibration")
    srv = Server(path, "--min-audience", 0, "--min-seeds", 0, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
    users = list(M.user_ids)
    check_exact(M, r, "float32", users)
    check_lookalike(M, r, "float32")
    check_solved(M, r, "float32", users)
    check_card_and_errors(M, r, "float32")
    srv.stop()
    ok(isinstance(M.V, np.ndarray) and not M.V.flags.owndata and not M.V.flags.writeable and
       M.U.base is not None and M.user_ids[0] == users[0] and M.user_index(users[9]) == 9,
       "factors are read-only views of the mapped file; ids and rows by the file's hash index")
    # A rank that is not a multiple of 8 (the scoring kernel's tail), then int8 user factors.
    odd, _ = make_model(d, name="odd.model", factors=13, seed=4, users=1200, segments=150, events=20000)
    q8 = os.path.join(d, "q8.model")
    starling("quantize", odd, "-o", q8)
    for label, p in (("rank 13", odd), ("int8", q8)):
        Mx = starling_pkg.Model(p)
        srv = Server(p, "--min-audience", 0, "--min-seeds", 0, d=d)
        r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
        check_exact(Mx, r, label, list(Mx.user_ids))
        check_lookalike(Mx, r, label)
        srv.stop()
    ok(starling_pkg.Model(q8).int8 and starling_pkg.Model(q8).Uq.dtype == np.int8, "int8: the rows stay int8 in the file")
    # Popularity-weighted missing data: every fold-in against V^T diag(rho) V.
    pw = os.path.join(d, "pw.model")
    starling("train", ev, "-o", pw, "--factors", 16, "--iterations", 4, "--seed", 3, "-q",
             "--missing-weight", "popularity", "--missing-exponent", 0.5, "--prior-shape", "log")
    Mp = starling_pkg.Model(pw)
    ok(Mp.header["version"] == 3 and Mp.missing is not None and abs(float(Mp.missing.mean()) - 1) < 1e-5 and
       Mp.missing.std() > 0.1 and M.header["version"] == 2 and M.missing is None,
       "popularity-weighted: a version 3 file with its weights (mean 1); a uniform model stays version 2")
    srv = Server(pw, "--min-audience", 0, "--min-seeds", 0, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
    check_solved(Mp, r, "popularity-weighted", list(Mp.user_ids))
    check_card_and_errors(Mp, r, "popularity-weighted")
    srv.stop()
    # The linear popularity prior: q = pop / max pop in every score.
    lp = os.path.join(d, "lp.model")
    starling("train", ev, "-o", lp, "--factors", 16, "--iterations", 4, "--seed", 3, "-q", "--prior-shape", "linear")
    Ml = starling_pkg.Model(lp)
    pop = np.asarray(Ml.popularity, dtype=np.float64)
    ok(Ml.header["version"] == 4 and Ml.header["flags"] & 4 and Ml.header["prior_weight"] > 0 and
       np.array_equal(Ml.prior, (pop / pop.max()).astype(np.float32)),
       f"linear prior: a version 4 file with the flag, weight {Ml.header['prior_weight']}, q = pop / max pop")
    srv = Server(lp, "--min-audience", 0, "--min-seeds", 0, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
    check_exact(Ml, r, "linear prior", list(Ml.user_ids))
    check_solved(Ml, r, "linear prior", list(Ml.user_ids))
    info = r.execute_command("MODEL", "INFO")
    info = dict(zip(info[::2], info[1::2])) if isinstance(info, list) else info
    ok(info.get("prior_shape") == "linear", f"MODEL INFO says the prior's shape ({info.get('prior_shape')})")
    srv.stop()
    # The journal, on a model that weighs kinds and decays by age.
    kw = os.path.join(d, "kw.model")
    starling("train", ev, "-o", kw, "--factors", 16, "--iterations", 4, "--seed", 3, "-q",
             "--kind-weight", "impression=0.2,click=1,follow=3,conversion=5", "--half-life", "30d")
    check_journal(d, kw)
    check_damage(d, path)
    note("model users: bit for bit; fold-in, explanations and online users: float64 here, float32 in the server")
done()
