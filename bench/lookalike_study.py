#!/usr/bin/python3
"""LOOKALIKE and SIMILAR scorers compared on held-out engagement, in numpy
over a model file and the known split's test set (bench/quality.py writes
both: WORK/DATASET/known/train.tsv, test.tsv; train the model with
`starling train train.tsv -o m.model`).

The protocol is `starling eval --lookalike`'s (docs/EVALUATION.md): the 200
segments with the most held-out users (at least 5 held out, 20 in training);
seeds, 10% of a segment's training users; candidates, the users without the
segment in training; recall of its held-out users at N = |held out|. SIMILAR:
overlap@10 with the 10 segments most co-engaged with it in held-out
engagement (cosine of held-out user sets, at least 2 in common).

usage: bench/lookalike_study.py MODEL TEST [--mode lookalike|normalised|similar|oracle]
                                [--protocol held|members] [--segments 200] [--seed 42]
                                [--no-softmax] [--truth FILE]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from starling._file import ModelFile  # noqa: E402


def load(model, test, cold=False):
    """The model and the test pairs of the users it knows, as (user, segment)
    index arrays; with cold, the users it does not know get the indices past
    its users (their every pair: engagement the model did not train on)."""
    mf = ModelFile(model, verify=False)
    m, n = mf.m, mf.n
    uid = {mf.user_table.name(i): i for i in range(m)}
    sid = {mf.segment_table.name(i): i for i in range(n)}
    hu, hs = [], []
    with open(test) as f:
        next(f)
        for line in f:
            u, s, _ = line.rstrip("\n").split("\t")
            if s not in sid:
                continue
            if u not in uid:
                if not cold:
                    continue
                uid[u] = len(uid)
            hu.append(uid[u])
            hs.append(sid[s])
    return mf, np.array(hu, dtype=np.int64), np.array(hs, dtype=np.int64)


def seeds_of(mem, rng):
    """A seed sample: 10% of the members, at least one."""
    seeds = mem[rng.random(len(mem)) < 0.1]
    return seeds if len(seeds) else mem[:1]


def report(res, base, what):
    """One line per ranker: mean, 95% interval, lift over the base ranker and
    the paired gain over it (per task, with its 95% interval)."""
    b = np.mean(res[base])
    for name, v in res.items():
        v = np.array(v)
        g = v - np.array(res[base])
        print("%-40s %.4f +- %.4f  %.2fx %s, gain %+.4f +- %.4f" % (
            name, v.mean(), 1.96 * v.std() / np.sqrt(len(v)), v.mean() / b, what, g.mean(),
            1.96 * g.std(ddof=1) / np.sqrt(len(g)) if len(g) > 1 else 0.0))


def topn_recall(score, cand, target, n):
    sc = np.where(cand, score, -np.inf)
    if n >= len(sc):
        top = np.arange(len(sc))
    else:
        top = np.argpartition(-sc, n)[:n]
    top = top[np.isfinite(sc[top])]
    return target[top].sum() / target.sum()


class Data:
    def __init__(self, mf, hu, hs):
        self.mf = mf
        self.m, self.n, self.k = mf.m, mf.n, mf.k
        self.U = np.asarray(mf.U, dtype=np.float64)
        self.V = np.asarray(mf.V, dtype=np.float64)
        hp = mf.hist_ptr.astype(np.int64)
        self.hist_ptr = hp
        self.hidx = mf.hist_idx.astype(np.int64)
        self.huser = np.repeat(np.arange(self.m), np.diff(hp))
        self.act = np.diff(hp).astype(np.float64)
        self.pop = np.bincount(self.hidx, minlength=self.n).astype(np.float64)
        self.hu, self.hs = hu, hs
        self.held_pop = np.bincount(hs, minlength=self.n)
        self.UtU = None

    def lookalike_segments(self, count):
        """The segments LOOKALIKE is measured on: at least 5 held out, 20 in
        training, the most held-out users first, at most count."""
        ok = np.flatnonzero((self.held_pop >= 5) & (self.pop >= 20))
        return ok[np.lexsort((ok, -self.held_pop[ok]))][:count]

    def task(self, s):
        """Segment s's training members, candidates (users without s in
        training) and targets (candidates holding s out); None without targets."""
        mem = self.members(s)
        cand = np.ones(self.m, dtype=bool)
        cand[mem] = False
        target = np.zeros(self.m, dtype=bool)
        target[self.hu[self.hs == s]] = True
        target &= cand
        return (mem, cand, target) if target.any() else None

    def members(self, s):
        return self.huser[self.hidx == s]

    def user_sum(self, w_seg):
        """Per user: the sum of w over its training segments."""
        return np.bincount(self.huser, weights=w_seg[self.hidx], minlength=self.m)


def seed_foldin(d, s, seeds, mult):
    """The seeds folded in as a new segment: the ALS solve of a segment
    vector against the user factors, with the model's confidences (each seed
    at the typical value of a pair, as SIMILAR folds in) and its row lambda
    times mult."""
    from starling import _kernels as K
    h = d.mf.header
    r = h["eps"] if h["confidence"] == K.CONF_LOG and h["eps"] > 0 else 1.0
    cm1, lam = K.confidences(h, d.mf.popularity, d.m, [s] * len(seeds), [r] * len(seeds))
    if d.UtU is None:
        d.UtU = d.U.T @ d.U
    Us = d.U[seeds]
    W = d.UtU + lam * mult * np.eye(d.k) + Us.T @ (cm1.astype(np.float64)[:, None] * Us)
    return d.U @ np.linalg.solve(W, Us.T @ (1.0 + cm1.astype(np.float64)))


def lookalike_scorers(d, s, seeds):
    """{name: score over users} for one segment's seeds."""
    out = {}
    m, n = d.m, d.n
    c = d.U[seeds].mean(axis=0)
    out["model (centroid)"] = d.U @ c
    for mult in (1, 10, 100):
        out["seeds folded in as a segment, lambda x%d" % mult] = seed_foldin(d, s, seeds, mult)
    out["most active"] = d.act.copy()
    seedmask = np.zeros(m, dtype=bool)
    seedmask[seeds] = True
    cnt = np.bincount(d.hidx[seedmask[d.huser]], minlength=n).astype(np.float64)
    cnt[s] = 0
    cooc = d.user_sum(cnt)
    out["co-occurrence"] = cooc / np.sqrt(np.maximum(d.act, 1))
    out["co-occurrence sum"] = cooc
    S = len(seeds)
    p = d.pop / m
    for beta in (1.0, 10.0):
        ps = (cnt + beta * p) / (S + beta)
        lift = ps / np.maximum(p, 1e-12)
        lw = np.log(lift)
        lw[s] = 0
        tot = d.user_sum(lw)
        mean = tot / np.maximum(d.act, 1)
        out["NB log-lift sum b%g" % beta] = tot
        out["NB mean log-lift x act b%g" % beta] = np.log(np.maximum(d.act, 1)) + mean * 1.0
        lin = lift.copy()
        lin[s] = 0
        out["lift sum b%g" % beta] = d.user_sum(lin)
    # model-based: the segment's own vector against users, normalised per user
    return out


def model_extras(d, s, seeds, logZ, scores):
    c = d.U[seeds].mean(axis=0)
    x = d.U @ c
    for beta in (1.0, 3.0, 10.0):
        scores["softmax centroid x act b%g" % beta] = beta * x - logZ[beta] + np.log(np.maximum(d.act, 1))
    xs = d.U @ d.V[s]
    scores["segment vector"] = xs
    scores["softmax segment x act b3"] = 3.0 * xs - logZ[3.0] + np.log(np.maximum(d.act, 1))


def log_partition(d, betas):
    out = {b: np.zeros(d.m) for b in betas}
    for a in range(0, d.m, 4096):
        X = d.U[a:a + 4096] @ d.V.T
        for b in betas:
            Y = b * X
            mx = Y.max(axis=1, keepdims=True)
            out[b][a:a + 4096] = (mx[:, 0] + np.log(np.exp(Y - mx).sum(axis=1)))
    return out




def ease_study(model, test, lam=200.0, segments=200, seed=42):
    """Per-user normalised scores: act(u) x P(s | u) with P(s | u) the user's
    positive scores over the segments it has not seen, from EASE or the model."""
    mf, hu, hs = load(model, test)
    d = Data(mf, hu, hs)
    if d.m * d.n > 5e8:
        raise SystemExit("normalised: %d users x %d segments is past this study's dense bound" % (d.m, d.n))
    X = np.zeros((d.m, d.n), dtype=np.float32)
    X[d.huser, d.hidx] = 1
    ease = d.n <= 5000  # the n x n inverse
    if ease:
        Gm = (X.T @ X).astype(np.float64)
        Gm[np.diag_indices(d.n)] += lam
        P = np.linalg.inv(Gm)
        B = -P / np.diag(P)
        B[np.diag_indices(d.n)] = 0
        S = X @ B.astype(np.float32)
        S[X > 0] = 0
        Sp = np.maximum(S, 0)
        norm_e = Sp.sum(axis=1) + 1e-9
    M = (d.U @ d.V.T).astype(np.float32)
    M[X > 0] = 0
    Mp = np.maximum(M, 0)
    norm_m = Mp.sum(axis=1) + 1e-9
    rng = np.random.default_rng(seed)
    order = d.lookalike_segments(segments)
    res = {}
    for s in order:
        t = d.task(s)
        if t is None:
            continue
        mem, cand, target = t
        seeds = seeds_of(mem, rng)
        sc = {"most active": d.act, "model column": M[:, s], "model act x P(s|u)": d.act * Mp[:, s] / norm_m,
              "model P(s|u)": Mp[:, s] / norm_m, "centroid": d.U @ d.U[seeds].mean(axis=0)}
        if ease:
            sc.update({"EASE column": S[:, s], "EASE act x P(s|u)": d.act * Sp[:, s] / norm_e,
                       "EASE P(s|u)": Sp[:, s] / norm_e})
        for name, v in sc.items():
            res.setdefault(name, []).append(topn_recall(v, cand, target, int(target.sum())))
    report(res, "most active", "most active")


def similar_study(model, test, segments=200, min_common=2, shrink=0.0, spread=False, mock_draws=0, either_held=False,
                  prior_scales=()):
    """SIMILAR rankers: overlap@10 with the 10 segments most co-engaged with
    s in the engagement the model did not train on (eval's truth: the cosine
    of those user sets, at least 2 users in common, the 200 segments with the
    most such users; a known user's held-out pairs and an unknown user's every
    pair, so the new-user split's test set measures it on unseen users). Other truths, to see whether any is predictable: min_common users
    in common, the cosine shrunk by shrink, segments spread evenly over the
    held-out popularity order instead of its head. mock_draws > 0 adds a
    scorer estimating the truth's distribution: that many draws of a quarter
    of the training pairs as a mock held-out set, each segment scored by how
    often it lands in the mock truth. either_held (a known split): the
    truth counts every pair of a user's segments of which at least one was
    held out (a pair the model never saw together), the cosine over the
    users holding each segment anywhere. prior_scales: the fold-in scored
    with the prior weight times each of these as well."""
    from starling import _kernels as K
    mf, hu, hs = load(model, test, cold=True)
    d = Data(mf, hu[hu < mf.m], hs[hu < mf.m])
    h = mf.header
    mall = max(d.m, int(hu.max()) + 1 if len(hu) else 0)  # model users, then cold ones
    n = d.n
    # held-out and training user sets, as (user, segment) pairs sorted by segment
    hp = np.bincount(hs, minlength=n).astype(np.float64)
    tpop = d.pop

    def co_row(us, ss, s, users_of_s):
        """Per segment t: the users of s who also hold t, among the pairs (us, ss)."""
        mark = np.zeros(mall, dtype=bool)
        mark[users_of_s] = True
        return np.bincount(ss[mark[us]], minlength=n).astype(np.float64)

    q = K.prior(tpop, mf.prior_linear).astype(np.float64)  # the model's prior, in its shape
    w = float(h["prior_weight"])
    G = K.gram(mf.V)
    r = h["eps"] if h["confidence"] == K.CONF_LOG and h["eps"] > 0 else 1.0
    C = d.U.T @ d.U
    VC = d.V @ C
    mnorm = np.sqrt(np.einsum("ij,ij->i", VC, d.V))
    mean_u = d.U.mean(axis=0)
    avg = d.V @ mean_u + w * q  # every segment's mean score over users
    ok = np.flatnonzero(hp >= 5)
    order = ok[np.lexsort((ok, -hp[ok]))]
    if spread:
        order = order[np.linspace(0, len(order) - 1, min(segments, len(order))).astype(int)]
    order = order[:segments]

    def truth_of(us, ss, s, p):
        co = co_row(us, ss, s, us[ss == s])
        c = co / (np.sqrt(p[s] * p) + shrink + 1e-12)
        c[co < min_common] = -1
        c[s] = -1
        t = np.flatnonzero(c > -1)
        return t[np.lexsort((t, -c[t]))][:10], co

    all_u = np.concatenate([d.huser, hu])
    all_s = np.concatenate([d.hidx, hs])
    all_held = np.concatenate([np.zeros(len(d.huser), dtype=bool), np.ones(len(hu), dtype=bool)])
    all_pop = np.bincount(all_s, minlength=n).astype(np.float64)

    def either_truth(s):
        s_held = np.full(mall, -1, dtype=np.int8)  # per user: s held out (1), in training (0), absent (-1)
        s_held[all_u[all_s == s]] = all_held[all_s == s]
        both = s_held[all_u] >= 0
        co = np.bincount(all_s[both & ((s_held[all_u] == 1) | all_held)], minlength=n).astype(np.float64)
        c = co / (np.sqrt(all_pop[s] * all_pop) + shrink + 1e-12)
        c[co < min_common] = -1
        c[s] = -1
        t = np.flatnonzero(c > -1)
        return t[np.lexsort((t, -c[t]))][:10], co

    mock = {}
    if mock_draws:
        rng = np.random.default_rng(7)
        mock = {s: np.zeros(n) for s in order}
        for _ in range(mock_draws):
            keep = rng.random(len(d.hidx)) < 0.25
            us, ss = d.huser[keep], d.hidx[keep]
            p = np.bincount(ss, minlength=n).astype(np.float64)
            for s in order:
                mock[s][truth_of(us, ss, s, p)[0]] += 1
    res = {}
    tsize, tco = [], []  # what the truth is made of: its members' held-out users, users in common
    for s in order:
        truth, cos_ = either_truth(s) if either_held else truth_of(hu, hs, s, hp)
        if len(truth) == 0:
            continue
        tsize += list(hp[truth])
        tco += list(cos_[truth])
        cm1, lam = K.confidences(h, mf.popularity, d.m, [s], [r])
        x = K.foldin(G, mf.V, [s], cm1, lam).astype(np.float64)
        fold = d.V @ x + w * q
        tr_co = co_row(d.huser, d.hidx, s, d.members(s))
        sc = {"popularity": tpop, "model (fold-in)": fold, "training co-engagement cosine":
              tr_co / np.sqrt(tpop[s] * tpop + 1e-12),
              "fold-in x shrunk training cosine": np.maximum(fold, 0) * tr_co / (np.sqrt(tpop[s] * tpop) + 10),
              "model-metric cosine": VC[s] @ d.V.T / (mnorm[s] * mnorm + 1e-12),
              "model-metric co-engagement": VC[s] @ d.V.T,
              "fold-in / mean score": fold / np.maximum(avg, 1e-6),
              "fold-in - mean score": fold - avg,
              "fold-in + pop rank blend": np.argsort(np.argsort(fold)) + np.argsort(np.argsort(tpop))}
        if mock_draws:
            sc["mock truth frequency"] = mock[s]
        for f in prior_scales:
            sc["fold-in, prior weight x %g" % f] = d.V @ x + f * w * q
        for name, v in sc.items():
            v = v.astype(np.float64).copy()
            v[s] = -np.inf
            top = np.lexsort((np.arange(n), -v))[:10]
            res.setdefault(name, []).append(len(set(top) & set(truth)) / len(truth))
    report(res, "popularity", "popularity")
    print("truth: its members' held-out users median %.0f, users in common with s median %.1f" %
          (np.median(tsize), np.median(tco)))


def oracle_study(model, test, truth, segments=200):
    """What the synthetic set's held-out users can be told by: the planted
    affinities (`starling synth --truth`), the planted topics, and a ranker
    fitted on the held-out truth itself from (activity, count of the
    segment's topic in the user's training history), fitted on the even
    segments and measured on the odd ones."""
    mf, hu, hs = load(model, test)
    d = Data(mf, hu, hs)
    uid = {mf.user_table.name(i): i for i in range(d.m)}
    sid = {mf.segment_table.name(i): i for i in range(d.n)}
    tu, ts, ta = [], [], []
    with open(truth) as f:
        next(f)
        for line in f:
            u, s, a = line.strip().split(",")
            if u in uid and s in sid:
                tu.append(uid[u])
                ts.append(sid[s])
                ta.append(float(a))
    tu, ts, ta = np.array(tu), np.array(ts), np.array(ta)
    topic = np.array([mf.segment_table.name(i).split(":")[1] for i in range(d.n)])
    tnames, tid = np.unique(topic, return_inverse=True)
    planted_topic = np.zeros((d.m, len(tnames)), dtype=bool)
    planted_topic[tu, tid[ts]] = True
    H = np.zeros((d.m, len(tnames)))
    np.add.at(H, (d.huser, tid[d.hidx]), 1)
    g = d.pop / d.pop.sum()
    order = d.lookalike_segments(segments)
    abin = np.minimum(np.floor(np.log2(np.maximum(d.act, 1)) * 2).astype(int), 30)
    tc = np.minimum(H, 6).astype(int)
    num, den = np.zeros((31, 7)), np.zeros((31, 7))
    res = {}
    for i, s in enumerate(order):
        t = d.task(s)
        if t is None:
            continue
        mem, cand, target = t
        f = tc[:, tid[s]]
        if i % 2 == 0:
            np.add.at(den, (abin[cand], f[cand]), 1)
            np.add.at(num, (abin[target], f[target]), 1)
        aff = np.zeros(d.m)
        sel = ts == s
        aff[tu[sel]] = ta[sel]
        sc = {"most active": d.act,
              "oracle: planted affinity": 1 - np.exp(-d.act * (0.7 * aff + 0.3 * g[s]) * 3),
              "oracle: planted topic, then activity": planted_topic[:, tid[s]] * 1e6 + d.act,
              "topic in history, then activity": H[:, tid[s]] * 1e6 + d.act}
        for name, v in sc.items():
            res.setdefault(name, []).append(topn_recall(v, cand, target, int(target.sum())))
    rate = (num + 0.01) / (den + 1)
    for i, s in enumerate(order):
        if i % 2 == 0:
            continue
        t = d.task(s)
        if t is None:
            continue
        mem, cand, target = t
        v = rate[abin, tc[:, tid[s]]] + 1e-9 * d.act
        res.setdefault("odd segments: fitted on held-out truth", []).append(
            topn_recall(v, cand, target, int(target.sum())))
        res.setdefault("odd segments: most active", []).append(topn_recall(d.act, cand, target, int(target.sum())))
    report(res, "most active", "most active")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("test")
    ap.add_argument("--segments", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-softmax", action="store_true", help="skip the m x n softmax scorers (large models)")
    ap.add_argument("--mode", default="lookalike", choices=("lookalike", "normalised", "similar", "oracle"))
    ap.add_argument("--min-common", type=int, default=2, help="similar mode: users in common a truth member needs")
    ap.add_argument("--shrink", type=float, default=0.0, help="similar mode: the truth's cosine shrunk by this")
    ap.add_argument("--spread", action="store_true", help="similar mode: segments spread over popularity")
    ap.add_argument("--mock-draws", type=int, default=0, help="similar mode: draws of a mock held-out set")
    ap.add_argument("--prior-scales", default="", help="similar mode: also the fold-in with the prior weight "
                    "times each of these (comma-separated)")
    ap.add_argument("--either-held", action="store_true", help="similar mode, a known split: the truth counts "
                    "every pair of a user's segments with at least one held out")
    ap.add_argument("--truth", help="oracle mode: the planted affinities, `starling synth --truth FILE`")
    ap.add_argument("--protocol", default="held", choices=("held", "members"),
                    help="lookalike mode: the held-out users (default) or the segment's other training users")
    a = ap.parse_args()
    if a.mode == "normalised":
        return ease_study(a.model, a.test, segments=a.segments, seed=a.seed)
    if a.mode == "similar":
        return similar_study(a.model, a.test, segments=a.segments, min_common=a.min_common, shrink=a.shrink,
                             spread=a.spread, mock_draws=a.mock_draws, either_held=a.either_held,
                             prior_scales=[float(x) for x in a.prior_scales.split(",") if x])
    if a.mode == "oracle":
        return oracle_study(a.model, a.test, a.truth, segments=a.segments)
    mf, hu, hs = load(a.model, a.test)
    d = Data(mf, hu, hs)
    rng = np.random.default_rng(a.seed)
    order = d.lookalike_segments(a.segments)
    logZ = None if a.no_softmax else log_partition(d, (1.0, 3.0, 10.0))
    res = {}
    for s in order:
        t = d.task(s)
        if t is None:
            continue
        mem, cand, target = t
        seeds = seeds_of(mem, rng)
        if a.protocol == "members":
            cand = np.ones(d.m, dtype=bool)
            cand[seeds] = False
            target = np.zeros(d.m, dtype=bool)
            target[mem] = True
            target[seeds] = False
            if not target.any():
                continue
        sc = lookalike_scorers(d, s, seeds)
        if logZ is not None:
            model_extras(d, s, seeds, logZ, sc)
        for name, v in sc.items():
            res.setdefault(name, []).append(topn_recall(v, cand, target, int(target.sum())))
    report(res, "most active", "most active")


if __name__ == "__main__":
    main()
