#!/usr/bin/python3
"""Recovery of the planted truth on synthetic data.

synth plants each user's interests; a working trainer must rank a user's
planted segments at the top far more often than popularity does. The figure
is precision@|planted| (the share of a user's top-|planted| segments that are
planted), averaged over users, for the model and for the popularity ranking.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
from starling import Model  # noqa: E402
from tap import done, note, ok, starling  # noqa: E402

with tempfile.TemporaryDirectory() as d:
    ev, truth, model = (os.path.join(d, f) for f in ("ev.csv.gz", "truth.csv", "m.model"))
    starling("synth", "-o", ev, "--users", 4000, "--segments", 400, "--events", 120000, "--seed", 3,
             "--truth", truth)
    starling("train", ev, "-o", model, "--factors", 32, "--iterations", 10, "--seed", 1, "-q",
             "--kind-weight", "impression=0.2,click=1,follow=3,conversion=5")
    m = Model(model)
    uidx = {u: i for i, u in enumerate(m.user_ids)}
    sidx = {s: i for i, s in enumerate(m.segment_ids)}
    planted = {}
    with open(truth) as f:
        next(f)
        for line in f:
            u, s, _a = line.rstrip("\n").split(",")
            planted.setdefault(u, set()).add(s)
    scores = m.U @ m.V.T
    pop_order = np.argsort(-m.popularity, kind="stable")
    prec_model, prec_pop = [], []
    for u, segs in planted.items():
        if u not in uidx:
            continue
        want = {sidx[s] for s in segs if s in sidx}
        n = len(segs)
        top = np.argsort(-scores[uidx[u]], kind="stable")[:n]
        prec_model.append(len(want & set(top.tolist())) / n)
        prec_pop.append(len(want & set(pop_order[:n].tolist())) / n)
    pm, pp = float(np.mean(prec_model)), float(np.mean(prec_pop))
    note(f"precision@|planted| over {len(prec_model)} users: model {pm:.3f}, popularity {pp:.3f}")
    ok(len(prec_model) == 4000, "every user has planted interests")
    ok(pm >= 0.4, f"the model recovers the planted interests (precision {pm:.3f} >= 0.4)")
    ok(pm >= 3 * pp, f"and at least 3x better than popularity ({pm:.3f} vs {pp:.3f})")
done()
