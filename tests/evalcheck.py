"""Independent recomputation of `starling eval` figures in numpy, for the
tests: the metrics of a ranking (ties by the lower segment index, training
segments excluded, recall normalised by min(K, held out)), their 95%
intervals, and the reader of an `eval --dump` directory."""
import os

import numpy as np
from tap import ok

METRICS = ["precision", "recall", "ndcg", "map", "hit"]


def metrics_of(score_rows, seen, test, n, KS):
    """Per-user metrics at each K, and AUC, from a (users x n) score source."""
    out = {m: np.zeros((len(test), len(KS))) for m in METRICS}
    auc = np.zeros(len(test))
    tops = []
    disc = 1.0 / np.log2(np.arange(2, max(KS) + 2))
    for i in range(len(test)):
        s = score_rows(i).astype(np.float64)
        cand = np.ones(n, bool)
        cand[seen[i]] = False
        idx = np.nonzero(cand)[0]
        # score descending, ties by the lower index: a stable sort of -score
        ranked = idx[np.argsort(-s[idx], kind="stable")]
        tops.append(ranked[:max(KS)])
        t = np.zeros(n, bool)
        t[test[i]] = True
        rel = t[ranked[:max(KS)]].astype(np.float64)
        nt = len(test[i])
        hits = np.cumsum(rel)
        for j, K in enumerate(KS):
            h = hits[min(K, len(rel)) - 1]
            norm = min(K, nt)
            out["precision"][i, j] = h / K
            out["recall"][i, j] = h / norm
            out["ndcg"][i, j] = (rel[:K] * disc[:len(rel[:K])]).sum() / disc[:norm].sum()
            prec_at = hits[:K] / np.arange(1, len(rel[:K]) + 1)
            out["map"][i, j] = (prec_at * rel[:K]).sum() / norm
            out["hit"][i, j] = 1.0 if h > 0 else 0.0
        neg = s[cand & ~t]
        pos = s[t]
        if len(neg):
            greater = (pos[:, None] > neg[None, :]).sum()
            equal = (pos[:, None] == neg[None, :]).sum()
            auc[i] = (greater + 0.5 * equal) / (len(pos) * len(neg))
        else:
            auc[i] = np.nan
    return out, auc, tops


def ci(x):
    x = x[~np.isnan(x)]
    return x.mean(), 1.959963984540054 * x.std(ddof=1) / np.sqrt(len(x))


def compare(name, out, auc, tops, n, got, KS, tol=1e-6):
    worst = 0.0
    for m in METRICS:
        for j in range(len(KS)):
            mean, half = ci(out[m][:, j])
            g = got[m][j]
            worst = max(worst, abs(mean - g["mean"]), abs(half - g["ci95"]))
    mean, half = ci(auc)
    worst = max(worst, abs(mean - got["auc"]["mean"]), abs(half - got["auc"]["ci95"]))
    for j, K in enumerate(KS):
        cov = len(set(np.concatenate([t[:K] for t in tops]).tolist())) / n
        worst = max(worst, abs(cov - got["coverage"][j]))
    ok(worst < tol, f"{name}: every metric, interval and coverage equals numpy's (largest difference {worst:.2e})")


def read_dump(dump):
    """(segments, users, seen, test) of a --dump directory: users are rows
    [id, model row, activity]; seen and test are lists of segment indices."""
    segs = [line.rstrip("\n") for line in open(os.path.join(dump, "segments.tsv"))]
    sidx = {s: i for i, s in enumerate(segs)}
    users = [line.rstrip("\n").split("\t") for line in open(os.path.join(dump, "users.tsv"))]
    uidx = {u[0]: i for i, u in enumerate(users)}
    seen = [[] for _ in users]
    test = [[] for _ in users]
    for line in open(os.path.join(dump, "seen.tsv")):
        u, s = line.rstrip("\n").split("\t")
        seen[uidx[u]].append(sidx[s])
    for line in open(os.path.join(dump, "test.tsv")):
        u, s = line.rstrip("\n").split("\t")
        test[uidx[u]].append(sidx[s])
    return segs, users, seen, test
