#!/usr/bin/python3
"""Real data: Last.fm 2K listens (../shared/data/lastfm-2k, research use only).

Hold out 20% of each user's artists (users with at least 5) with a fixed
seed, train on the rest with the defaults, and measure recall@20 with the
user's training artists excluded, normalised by min(20, |held out|): the
model must beat the popularity ranking by a wide margin. A sample of users is
also asked through `starling segments --exclude-seen` to check that the
command line ranks exactly as the factors do.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
from starling import Model  # noqa: E402
from tap import SHARED, done, note, ok, skip_all, starling  # noqa: E402

DATA = os.path.join(SHARED, "data", "lastfm-2k", "user_artists.dat")
if not os.path.exists(DATA):
    skip_all(f"{DATA} is absent (needs ../shared beside the checkout)")


def split(path, frac, seed):
    rows = {}
    with open(path) as f:
        next(f)
        for line in f:
            u, a, w = line.split("\t")
            rows.setdefault(u, []).append((a, int(w)))
    rng = np.random.default_rng(seed)
    train, test = [], {}
    for u in sorted(rows, key=int):
        items = rows[u]
        if len(items) >= 5:
            perm = rng.permutation(len(items))
            n_test = int(round(frac * len(items)))
            held = set(perm[:n_test].tolist())
        else:
            held = set()
        for i, (a, w) in enumerate(items):
            if i in held:
                test.setdefault(u, set()).add(a)
            else:
                train.append(f"{u}\t{a}\t{w}")
    return train, test


def recall_at(rank_fn, m, test, k=20):
    uidx = {u: i for i, u in enumerate(m.user_ids)}
    sidx = {s: i for i, s in enumerate(m.segment_ids)}
    rec = []
    for u, held in test.items():
        if u not in uidx:
            continue
        ui = uidx[u]
        scores = rank_fn(ui).astype(np.float64).copy()
        seen = m.hist_idx[m.hist_ptr[ui]:m.hist_ptr[ui + 1]]
        scores[seen] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        want = {sidx[a] for a in held if a in sidx}
        rec.append(len(want & set(top.tolist())) / min(k, len(held)))
    return float(np.mean(rec)), len(rec)


with tempfile.TemporaryDirectory() as d:
    train, test = split(DATA, 0.2, 2024)
    tr = os.path.join(d, "train.tsv")
    with open(tr, "w") as f:
        f.write("\n".join(train) + "\n")
    model = os.path.join(d, "lastfm.model")
    starling("train", tr, "-o", model, "--iterations", 15, "--seed", 1, "-q")
    m = Model(model)
    rm, n = recall_at(lambda ui: m.row_scores(ui), m, test)
    rp, _ = recall_at(lambda ui: m.popularity, m, test)
    note(f"recall@20 over {n} users: model {rm:.4f}, popularity {rp:.4f}, lift {rm / rp:.2f}x")
    ok(n > 1800, f"{n} test users")
    ok(rp > 0.08, f"popularity baseline is sane ({rp:.4f})")
    ok(rm >= 1.6 * rp, f"the model beats popularity by a wide margin ({rm:.4f} vs {rp:.4f})")
    ok(rm >= 0.20, f"recall@20 {rm:.4f} >= 0.20")
    # The command line ranks as the factors do.
    same = True
    sidx = {s: i for i, s in enumerate(m.segment_ids)}
    for u in list(test)[:25]:
        ui = m.user_index(u)
        out = starling("segments", model, u, "-k", 20, "--exclude-seen").splitlines()
        got = [line.split("\t")[0] for line in out]
        scores = m.row_scores(ui).astype(np.float64)
        scores[m.hist_idx[m.hist_ptr[ui]:m.hist_ptr[ui + 1]]] = -np.inf
        want = [m.segment_ids[i] for i in np.argsort(-scores, kind="stable")[:20]]
        if got != want:
            # Equal scores may tie differently in float32 vs float64; compare score sets then.
            got_scores = sorted(round(float(scores[sidx[s]]), 4) for s in got)
            want_scores = sorted(round(float(scores[sidx[s]]), 4) for s in want)
            if got_scores != want_scores:
                same = False
                note(f"user {u}: cli {got[:5]} numpy {want[:5]}")
    ok(same, "starling segments --exclude-seen ranks as the factors do, for 25 users")
done()
