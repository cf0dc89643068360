#!/usr/bin/python3
"""The strong baselines of `starling eval`, item-kNN and EASE, recomputed in
numpy from the model file's training history (read by the starling package, python/):

- item-kNN: cosine of the segments' user sets with shrinkage, each segment's
  100 most similar others (ties by the lower index), a user's score the sum
  of its training segments' similarities;
- EASE: B = -P / diag(P) with P = (X^T X + lambda I)^-1 over the segments that
  have training users, lambda = 10 x their mean user count, diag(B) = 0;

then the dumped scores (--dump: item-knn.f32, ease.f32) must equal numpy's,
and every metric starling reports for them must follow from those scores. A
data set with a planted structure (`starling synth`) and, for the sparse
path, an eval MODEL TEST run whose unknown users are folded in.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
from evalcheck import compare, metrics_of, read_dump  # noqa: E402
from starling import Model  # noqa: E402
from tap import STARLING, done, note, ok  # noqa: E402

KS = [5, 10, 20]


def history(m):
    """The binary training matrix X (users x segments) of the model file."""
    n = len(m.segment_ids)
    X = np.zeros((len(m.user_ids), n))
    for u in range(len(m.user_ids)):
        X[u, m.hist_idx[m.hist_ptr[u]:m.hist_ptr[u + 1]]] = 1
    return X


def knn_matrix(X, keep=100, shrink=10.0):
    C = X.T @ X
    cnt = np.diag(C).copy()
    S = C / (np.sqrt(np.outer(cnt, cnt)) + shrink)
    np.fill_diagonal(S, 0)
    S[C == 0] = 0
    out = np.zeros_like(S)
    for i in range(S.shape[0]):
        cand = np.nonzero(C[i] > 0)[0]
        cand = cand[cand != i]
        order = cand[np.lexsort((cand, -S[i, cand]))][:keep]
        out[i, order] = S[i, order]
    return out


def ease_matrix(X):
    G = X.T @ X
    active = np.nonzero(np.diag(G) > 0)[0]
    Ga = G[np.ix_(active, active)]
    lam = 10.0 * np.diag(Ga).mean()
    P = np.linalg.inv(Ga + lam * np.eye(len(active)))
    Ba = -P / np.diag(P)[None, :]
    np.fill_diagonal(Ba, 0)
    B = np.zeros_like(G)
    B[np.ix_(active, active)] = Ba
    return B, lam


def check(name, dump, m, got):
    segs, users, seen, test = read_dump(dump)
    n = len(segs)
    ok(segs == m.segment_ids.tolist(), f"{name}: the dump's segment order is the model's")
    X = history(m)
    rows = np.zeros((len(users), n))
    for i, s in enumerate(seen):
        rows[i, s] = 1
    S = knn_matrix(X)
    B, lam = ease_matrix(X)
    for rk, M in (("item-knn", S), ("ease", B)):
        path = os.path.join(dump, rk + ".f32")
        if not ok(os.path.exists(path), f"{name}: {rk} scores dumped"):
            continue
        scores = np.fromfile(path, dtype="<f4").reshape(len(users), n)
        mine = rows @ M
        err = np.abs(mine - scores).max() / max(1.0, np.abs(mine).max())
        ok(err < 1e-4, f"{name}: {rk}'s scores equal numpy's (largest relative difference {err:.2e})")
        out, auc, tops = metrics_of(lambda i: scores[i], seen, test, n, KS)
        compare(f"{name}: {rk}", out, auc, tops, n, got["rankers"][rk], KS)
    ok(abs(got["rankers"]["ease"]["lambda"] - lam) < 1e-6 * lam, f"{name}: EASE's lambda {lam:.4g} is 10 x the mean "
       "users per segment")


with tempfile.TemporaryDirectory() as d:
    ev = os.path.join(d, "ev.csv")
    subprocess.run([STARLING, "synth", "-o", ev, "--users", "3000", "--segments", "200", "--events", "60000",
                    "--seed", "3"], check=True, capture_output=True)
    dump, model = os.path.join(d, "dump"), os.path.join(d, "m.model")
    r = subprocess.run([STARLING, "eval", ev, "--split", "holdout:0.2", "--min-events", "3", "-k", "5,10,20",
                        "--factors", "16", "--dump", dump, "-o", model, "-q", "--json"], capture_output=True,
                       text=True)
    ok(r.returncode == 0, "eval --split runs with both baselines" + ("" if r.returncode == 0 else r.stderr))
    got = json.loads(r.stdout)
    ok(set(got["rankers"]) == {"model", "popularity", "item-knn", "ease", "random"} and not got["not_ranked"],
       "the JSON has every ranker: " + ", ".join(got["rankers"]))
    ok(set(got["lift"]) == {"popularity", "item-knn", "ease", "random"}, "and the model's lift over each baseline")
    m = Model(model)
    check("split form", dump, m, got)
    meta = dict(line.split("=", 1) for line in m.meta.splitlines() if "=" in line)
    ok("eval.recall@20.item-knn" in meta and "eval.recall@20.ease" in meta and "eval.lift.recall@20.ease" in meta,
       "eval -o writes the baselines' recall and the model's lift over them into the model")

    # The model form: users the model knows ranked as they are, unknown users
    # folded in; the baselines score a folded-in user from its fold-in part.
    test_ev = os.path.join(d, "test.csv")
    with open(ev) as f, open(test_ev, "w") as t:
        t.write(next(f))
        for line in f:
            u = line.split(",")[0]
            if u.endswith("7"):
                t.write(line.replace(u, "new" + u, 1))
    dump2 = os.path.join(d, "dump2")
    r = subprocess.run([STARLING, "eval", model, test_ev, "-k", "5,10,20", "--dump", dump2, "--fold-in-max", "3",
                        "-q", "--json"], capture_output=True, text=True)
    ok(r.returncode == 0, "eval MODEL TEST with unknown users runs" + ("" if r.returncode == 0 else r.stderr))
    got2 = json.loads(r.stdout)
    note("cold users: " + got2["run"]["evaluated users"])
    check("model form, folded-in users", dump2, m, got2)

    # Options: a bound below the segment count skips EASE with the reason.
    r = subprocess.run([STARLING, "eval", model, test_ev, "--ease-max-segments", "10", "-q"], capture_output=True,
                       text=True)
    ok(r.returncode == 0 and "ease: not ranked: EASE skipped" in r.stdout and "above its bound of 10" in r.stdout,
       "EASE above --ease-max-segments is skipped, and the table says why")
    r = subprocess.run([STARLING, "eval", model, test_ev, "--baselines", "none", "-q", "--json"], capture_output=True,
                       text=True)
    ok(r.returncode == 0 and set(json.loads(r.stdout)["rankers"]) == {"model", "popularity", "random"},
       "--baselines none ranks the model, popularity and random only")
    r = subprocess.run([STARLING, "eval", model, test_ev, "--baselines", "knn,bogus"], capture_output=True, text=True)
    ok(r.returncode == 2 and "--baselines: 'bogus'" in r.stderr, "an unknown baseline is a usage error: " +
       r.stderr.strip().splitlines()[0] if r.stderr else "")
done()
