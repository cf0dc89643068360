#!/usr/bin/python3
"""Real data: `starling eval` on Last.fm 2K (../shared/data/lastfm-2k, research
use only), every metric recomputed independently in numpy.

One run splits (holdout:0.2, users with at least 5 artists, fixed seed), trains,
evaluates and dumps (--dump) the test users, their excluded and held-out
segments and the exact float32 scores the model ranking used. This script:
- checks the split against the raw file: held-out and training artists of a
  user are disjoint and both come from the user's own listens;
- checks the dumped scores against its own U V^T + w q from the model file
  (read by the starling package in python/, not by the C code);
- recomputes popularity from the model's training history, ranks with
  training artists excluded (ties by lower index), and computes precision,
  recall (normalised by min(K, |test|)), NDCG, MAP, hit rate, AUC (ties 1/2),
  coverage and the 95% intervals: they must equal starling's to 1e-6;
- computes the same from the dumped model scores: equal to 1e-6;
- and the model must beat popularity by a wide margin.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
from starling import Model  # noqa: E402
from evalcheck import compare, metrics_of, read_dump  # noqa: E402
from tap import SHARED, STARLING, done, note, ok, skip_all  # noqa: E402

DATA = os.path.join(SHARED, "data", "lastfm-2k", "user_artists.dat")
if not os.path.exists(DATA):
    skip_all(f"{DATA} is absent (needs ../shared beside the checkout)")

KS = [5, 10, 20, 50, 100]


with tempfile.TemporaryDirectory() as d:
    dump, model = os.path.join(d, "dump"), os.path.join(d, "lastfm.model")
    r = subprocess.run([STARLING, "eval", DATA, "--split", "holdout:0.2", "--min-events", "5", "--split-seed", "7",
                        "--seed", "1", "--baselines", "item-knn", "--dump", dump, "-o", model, "-q"], capture_output=True, text=True)
    ok(r.returncode == 0, "starling eval --split holdout:0.2 runs" + ("" if r.returncode == 0 else r.stderr))
    note("\n# ".join(r.stdout.splitlines()[:30]))
    m = Model(model)
    got = json.load(open(os.path.join(dump, "metrics.json")))
    segs, users, seen, test = read_dump(dump)
    ok(segs == m.segment_ids.tolist(), "the dump's segment order is the model's")
    n = len(segs)
    ok(len(users) == got["test_users"] and len(users) > 1300, f"{len(users)} test users")

    # The split, against the raw file.
    raw = {}
    with open(DATA) as f:
        next(f)
        for line in f:
            u, a, _w = line.split("\t")
            raw.setdefault(u, set()).add(a)
    good = True
    for i, (u, row, _act) in enumerate(users):
        tr = {segs[s] for s in seen[i]}
        te = {segs[s] for s in test[i]}
        good &= not (tr & te) and tr | te <= raw[u] and len(raw[u]) >= 5
        hist = m.hist_idx[m.hist_ptr[int(row)]:m.hist_ptr[int(row) + 1]]
        good &= sorted(hist.tolist()) == sorted(seen[i])
    ok(good, "held-out and training artists are disjoint, the user's own, and training is the model's history")

    # Popularity recomputed from the training history.
    pop = np.bincount(m.hist_idx, minlength=n).astype(np.float64)
    ok(np.array_equal(pop, m.popularity.astype(np.float64)), "popularity = users per segment in training")
    out, auc, tops = metrics_of(lambda i: pop, seen, test, n, KS)
    compare("popularity", out, auc, tops, n, got["rankers"]["popularity"], KS)
    rec_pop = out["recall"][:, KS.index(20)].mean()

    # The model: the dumped scores are U V^T + w q of the model file ...
    scores = np.fromfile(os.path.join(dump, "scores.f32"), dtype="<f4").reshape(len(users), n)
    w = m.header["prior_weight"]
    ok(abs(w - got["prior"]["weight"]) < 1e-12, f"the model stores the fitted prior weight {w}")
    q = pop / pop.max() if got["prior"]["shape"] == "linear" else np.log1p(pop) / np.log1p(pop.max())
    rows = np.array([int(u[1]) for u in users])
    mine = m.U[rows].astype(np.float64) @ m.V.T.astype(np.float64) + w * q
    err = np.abs(mine - scores).max()
    ok(err < 1e-4, f"dumped scores equal numpy's U V^T + w q (largest difference {err:.2e})")
    # ... and every metric follows from them.
    out, auc, tops = metrics_of(lambda i: scores[i], seen, test, n, KS)
    compare("model", out, auc, tops, n, got["rankers"]["model"], KS)
    rec_model = out["recall"][:, KS.index(20)].mean()
    note(f"recall@20: model {rec_model:.4f}, popularity {rec_pop:.4f}, lift {rec_model / rec_pop:.2f}x")
    ok(rec_model >= 2 * rec_pop, "the model beats popularity at least twofold in recall@20")
    ok(got["rankers"]["random"]["recall"][KS.index(20)]["mean"] < 0.01, "random is the floor")
    ok(m.header["flags"] & 1 and got["calibration"]["ece"] < 0.01,
       f"the written model is calibrated (test ECE {got['calibration']['ece']:.6f})")
done()
