#!/usr/bin/python3
"""`starling train` writes a model ready to serve: by default it holds out
20% of the segments of a seeded share of users, fits the popularity-prior
weight and the calibration on half of them, reports on the other half (in
META and on stdout), then folds every validation user back in with all its
segments. Checked here against numpy: the folded-back rows are exact
solves, the history holds every pair, and the server's SEGMENTS, SCORE and
SCORE ... CALIBRATED rank and score with the model's prior and calibration."""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
from serve import Server  # noqa: E402
import oracle  # noqa: E402
from starling import Model  # noqa: E402
from tap import STARLING, done, ok, starling  # noqa: E402

try:
    import redis
except ImportError:
    redis = None


def meta(m):
    return dict(line.split("=", 1) for line in m.meta.splitlines() if "=" in line)


def exact_rows(m):
    """Each user's row solved exactly against V (the model's confidence,
    unobserved weight and regularisation)."""
    X = np.zeros((len(m.user_ids), m.V.shape[1]))
    for u in range(len(m.user_ids)):
        a, b = m.hist_ptr[u], m.hist_ptr[u + 1]
        X[u] = oracle.foldin(m, m.hist_idx[a:b], m.hist_val[a:b])[2]
    return X


with tempfile.TemporaryDirectory() as d:
    p = lambda name: os.path.join(d, name)  # noqa: E731
    ev = p("ev.csv")
    starling("synth", "-o", ev, "--users", 3000, "--segments", 200, "--events", 60000, "--seed", 5)
    common = ["--factors", 16, "--iterations", 6, "--seed", 5]
    out = starling("train", ev, "-o", p("v.model"), *common)
    starling("train", ev, "-o", p("plain.model"), *common, "--validation", 0, "-q")
    v, plain = Model(p("v.model")), Model(p("plain.model"))
    mv = re.search(r"validation: (\d+) users, (\d+) fit the prior weight \(([0-9.e+-]+)\), its shape \((?:log|linear)\) "
                   r"and the calibration; on the other (\d+), recall@20 ([0-9.]+), popularity ([0-9.]+)", out)
    ok(mv is not None, "train says what the validation fit found")
    nval = int(mv.group(1)) if mv else 0
    ok(520 <= nval <= 680 and int(mv.group(2)) + int(mv.group(4)) == nval,
       f"20% of the eligible users are validation users ({nval}), split in fit and report halves")
    ok(v.header["flags"] & 1 and v.header["calib_a"] > 0, "the model is calibrated, increasing in the score")
    ok(v.header["prior_weight"] == float(mv.group(3)), f"the fitted prior weight {v.header['prior_weight']} is saved")
    shape = re.search(r"its shape \((log|linear)\)", out)
    ok(shape is not None and bool(v.header["flags"] & 4) == (shape.group(1) == "linear")
       and meta(v).get("eval.prior_shape") == (shape.group(1) if shape else None),
       "the prior's shape train reports is the one saved (flag and META)")
    mt = meta(v)
    ok(mt.get("eval.split", "").startswith("train's validation holdout") and "eval.recall@20" in mt and
       "eval.recall@20.popularity" in mt and abs(float(mt["eval.recall@20"]) - float(mv.group(5))) < 1e-4,
       "META carries the validation figures (eval.*)")
    info = starling("info", p("v.model"))
    ok("calibration" in info and "eval.recall@20=" in info and "prior weight" in info,
       "starling info shows the calibration, the prior weight and the figures")
    ok(not plain.header["flags"] & 1 and plain.header["prior_weight"] == 0 and "eval." not in plain.meta,
       "--validation 0: no prior weight, no calibration, no figures")

    # Every pair is in the model: the validation users were folded back in.
    ok(v.header["nnz"] == plain.header["nnz"] and v.header["fingerprint"] == plain.header["fingerprint"] and
       np.array_equal(v.hist_idx, plain.hist_idx) and np.array_equal(v.popularity, plain.popularity),
       "the history, popularity and fingerprint are those of all the data")
    X = exact_rows(v)
    err = np.abs(X - v.U).max(1) / (np.abs(X).max(1) + 1e-12)
    exact = int((err < 1e-3).sum())
    ok(nval <= exact < len(v.user_ids) // 2,
       f"{exact} rows are exact solves over all of their segments (the {nval} validation users folded back in), "
       f"the others are the trainer's")

    # Deterministic: the same run, the same bytes of factors and the same fit.
    starling("train", ev, "-o", p("v2.model"), *common, "--threads", 1, "-q")
    v2 = Model(p("v2.model"))
    ok(np.array_equal(v.U, v2.U) and v.header["calib_a"] == v2.header["calib_a"],
       "1 thread and all: the same factors and calibration")

    # Too few users to fit on: the model is written without the fit, and says so.
    small = p("small.csv")
    with open(small, "w") as f:
        f.write("user,segment\n" + "".join(f"u{i},s{(i + j) % 7}\n" for i in range(30) for j in range(4)))
    out = starling("train", small, "-o", p("small.model"), "--factors", 4, "--iterations", 2)
    ok("too few to fit the prior weight" in out and not Model(p("small.model")).header["flags"] & 1,
       "30 users: no fit, said on stdout, the model still written")
    r = subprocess.run([STARLING, "train", ev, "-o", p("x.model"), "--validation", "0.7"], capture_output=True,
                       text=True)
    ok(r.returncode == 2 and "--validation must be between 0 and 0.5" in r.stderr, "--validation 0.7 is refused")

    # The server ranks and scores with the model's prior and calibration.
    if redis is None:
        ok(True, "# SKIP redis-py absent (apt-get install python3-redis)")
    else:
        srv = Server(p("v.model"), d=d)
        try:
            c = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
            same, calib, worst = True, True, 0.0
            for ui in (0, 7, 123, 999):
                u = v.user_ids[ui]
                sc = v.row_scores(ui)
                want = [v.segment_ids[i] for i in np.argsort(-sc, kind="stable")[:10]]
                src, pairs = c.execute_command("SEGMENTS", u, "COUNT", 10)
                got = [pairs[i] for i in range(0, len(pairs), 2)]
                if got != want:
                    tie = sorted(round(float(sc[v.segment_index(s)]), 4) for s in got) == \
                        sorted(round(float(sc[v.segment_index(s)]), 4) for s in want)
                    same = same and tie
                segs = want[:3]
                _, raw = c.execute_command("SCORE", u, *segs)
                _, pr = c.execute_command("SCORE", u, *segs, "CALIBRATED")
                for s, a, b in zip(segs, raw, pr):
                    si = v.segment_index(s)
                    worst = max(worst, abs(float(a) - float(sc[si])))
                    calib = calib and abs(float(b) - float(v.calibrate(float(sc[si])))) < 1e-5 and 0 < float(b) < 1
            ok(same, "SEGMENTS ranks by U.V + the fitted prior blend, as numpy does")
            ok(worst < 1e-4, f"SCORE is U.V + w q (largest difference {worst:.1e})")
            ok(calib, "SCORE ... CALIBRATED is the model's sigmoid of the score, in (0, 1)")
            info = dict(zip(*[iter(c.execute_command("MODEL", "INFO"))] * 2))
            ok(info.get("calibrated") in (1, "1") and "meta.eval.recall@20" in info,
               "MODEL INFO shows the calibration and the validation figures")
            srv2 = Server(p("plain.model"), "--journal", p("j2.journal"), d=d)
            try:
                c2 = redis.Redis(host="127.0.0.1", port=srv2.port)
                # Online quality (on the model without a prior, so that its ranking
                # and popularity's differ): one EVENT per user on a segment it never engaged
                # with, ranked 5th (a top-10 hit), 30th (top 50) or 150th (neither)
                # among its unengaged segments by the model's score; then INFO.
                want10 = want50 = pop10 = pop50 = lo10 = lo50 = 0
                q = plain.popularity  # the prior's order is popularity's
                sent = 0
                for ui in range(300, 600):
                    sc = plain.row_scores(ui).astype(np.float64)
                    seen = set(plain.hist_idx[plain.hist_ptr[ui]:plain.hist_ptr[ui + 1]].tolist())
                    order = [j for j in np.argsort(-sc, kind="stable") if j not in seen]
                    at = (4, 29, 149)[ui % 3]
                    s = order[at]
                    want10 += at < 10
                    want50 += at < 50
                    ahead = sum(1 for j in range(len(plain.segment_ids)) if j not in seen and j != s and q[j] > q[s])
                    pop10 += ahead < 10
                    pop50 += ahead < 50
                    tied = sum(1 for j in range(len(plain.segment_ids)) if j not in seen and j != s and q[j] >= q[s])
                    lo10 += tied < 10
                    lo50 += tied < 50
                    c2.execute_command("EVENT", plain.user_ids[ui], plain.segment_ids[s], 1)
                    sent += 1
                c2.execute_command("EVENT", plain.user_ids[0], plain.segment_ids[int(plain.hist_idx[plain.hist_ptr[0]])], 1)
                qi = c2.info("quality")
                ok(qi.get("online_new_engagements") == sent and qi.get("online_repeat_engagements") == 1,
                   f"INFO quality counts {sent} new engagements and 1 repeat")
                ok(abs(qi["online_hit_rate_top10"] - want10 / sent) < 1e-4 and
                   abs(qi["online_hit_rate_top50"] - want50 / sent) < 1e-4,
                   f"the model's online hit rate: top 10 {qi['online_hit_rate_top10']}, top 50 "
                   f"{qi['online_hit_rate_top50']} (numpy {want10 / sent:.4f}, {want50 / sent:.4f})")
                # Segments as popular as the one engaged may rank either side of it.
                ok(lo10 / sent - 1e-4 <= qi["online_popularity_hit_rate_top10"] <= pop10 / sent + 1e-4 and
                   lo50 / sent - 1e-4 <= qi["online_popularity_hit_rate_top50"] <= pop50 / sent + 1e-4,
                   f"popularity's online hit rate beside it: {qi['online_popularity_hit_rate_top10']}, "
                   f"{qi['online_popularity_hit_rate_top50']} (numpy, strict: {pop10 / sent:.4f}, {pop50 / sent:.4f})")
                c2.execute_command("MODEL", "RELOAD")
                ok(c2.info("quality").get("online_new_engagements") == 0, "a reloaded model starts counting again")
                try:
                    c2.execute_command("SCORE", v.user_ids[0], v.segment_ids[0], "CALIBRATED")
                    msg = ""
                except redis.ResponseError as e:
                    msg = str(e)
                ok("no calibration" in msg, "SCORE ... CALIBRATED on an uncalibrated model: a clear error")
            finally:
                srv2.stop()
        finally:
            ok(srv.stop() == 0, "server stopped cleanly")
done()
