"""The arithmetic of src/score.c and src/als.c, in numpy.

Scores are computed in exactly the order starling computes them, so that
they come out as the same float32 values, bit for bit: score.c's dot product
sums k products in eight lanes (lane j takes elements j, j + 8, ...; the
tail goes lane by lane into lanes 0, 1, ...), each product and each addition
rounded to float32 (no fused multiply-add), and combines the lanes as
((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)). numpy's elementwise float32
operations round the same way. Rankings therefore match the server exactly,
ties included (broken by the lower index).

Solves (fold-in, explanations) are computed in float64 from the model's
float32 numbers; starling solves in float32 with OpenBLAS and LAPACK, so
these agree to about 1e-6, not bit for bit.
"""
import math

import numpy as np

F32 = np.float32
BLOCK = 1 << 16  # rows scored at a time: bounds the scratch to BLOCK x 8 floats

CONF_LINEAR, CONF_LOG, CONF_BM25 = 0, 1, 2
REG_PLAIN, REG_FREQUENCY = 0, 1


def _lanes(rows, x, acc, tmp):
    """rows[r] . x for every row: the eight lane sums into acc (r x 8), then
    combined as score.c's dot8 combines them."""
    k = rows.shape[1]
    k8 = k - k % 8
    for i in range(0, k8, 8):
        np.multiply(rows[:, i:i + 8], x[i:i + 8], out=tmp)
        acc += tmp
    for j, i in enumerate(range(k8, k)):
        acc[:, j] += rows[:, i] * x[i]
    return ((acc[:, 0] + acc[:, 4]) + (acc[:, 1] + acc[:, 5])) + ((acc[:, 2] + acc[:, 6]) + (acc[:, 3] + acc[:, 7]))


def dot_rows(rows, x, scale=None):
    """rows[r] . x for every row, float32, as st_dot / scan_rows give them.
    With scale (int8 rows), row r is first dequantized to (float) q * scale[r]
    in float32, as scan_rows_q8 does."""
    x = np.asarray(x, dtype=F32)
    r = rows.shape[0]
    out = np.empty(r, dtype=F32)
    for a in range(0, r, BLOCK):
        e = min(r, a + BLOCK)
        block = rows[a:e]
        if scale is not None:
            block = block.astype(F32) * scale[a:e, None]
        acc = np.zeros((e - a, 8), dtype=F32)
        tmp = np.empty((e - a, 8), dtype=F32)
        out[a:e] = _lanes(block, x, acc, tmp)
    return out


def dot(a, b):
    """One dot product of two k-vectors, as st_dot."""
    return dot_rows(np.asarray(a, dtype=F32)[None, :], b)[0]


def prior(popularity, linear=False):
    """st_score_prior: q[s] = log(1 + pop[s]) / log(1 + max pop), or with
    linear pop[s] / max pop, in double, at most 1, stored as float32."""
    top = float(popularity.max()) if len(popularity) else 0.0
    top = max(top, 0.0)
    p = popularity.astype(np.float64)
    if linear:
        if not top > 0:
            return np.zeros(len(popularity), dtype=F32)
        return np.minimum(p / top, 1.0).astype(F32)
    d = math.log1p(top)
    if not d > 0:
        return np.zeros(len(popularity), dtype=F32)
    return np.minimum(np.log1p(p) / d, 1.0).astype(F32)


def topk(scores, want, exclude=None):
    """st_topk: the indices and scores of the `want` best scores, best first,
    ties by the lower index, NaN and the indices in exclude skipped."""
    s = np.asarray(scores, dtype=F32)
    ok = ~np.isnan(s)
    if exclude is not None and len(exclude):
        ok[np.asarray(exclude, dtype=np.int64)] = False
    idx = np.flatnonzero(ok)
    if want <= 0 or len(idx) == 0:
        return np.empty(0, np.int64), np.empty(0, F32)
    vals = s[idx]
    if want < len(idx):
        # Every candidate at least as good as the want-th best, then exact order.
        thr = np.partition(vals, len(vals) - want)[len(vals) - want]
        keep = vals >= thr
        idx, vals = idx[keep], vals[keep]
    order = np.lexsort((idx, -vals))[:want]
    return idx[order], vals[order]


def calibrate(a, b, score):
    """st_score_calibrated of one float32 score, as a float32 value."""
    z = a * float(score) + b
    p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return float(F32(p))


def conf1(h, v, idf, norm):
    """st_als_conf1: the confidence-minus-one of one raw value v (divided by
    w0 as the solvers take it), in float64; idf and norm only for bm25."""
    scheme = h["confidence"]
    w0 = h["unobserved_weight"] if h["unobserved_weight"] > 0 else 1.0
    v = float(v)
    if scheme == CONF_LOG:
        f = math.log1p(v / h["eps"]) if h["eps"] != 0 else math.inf
    elif scheme == CONF_BM25:
        k1 = h["bm25_k1"]
        f = v * (k1 + 1.0) / (k1 * norm + v) * idf
    else:
        f = v
    c = h["alpha"] * f
    if not (c > 0 and math.isfinite(c)):
        c = 0.0
    if w0 != 1:
        c = (1 + c) / w0 - 1
    return c


def row_lambda(h, nnz, cols):
    """st_als_row_lambda: lambda of a row with nnz nonzeros among cols columns."""
    w0 = h["unobserved_weight"] if h["unobserved_weight"] > 0 else 1.0
    if h["regularization"] == REG_FREQUENCY:
        return h["lambda_"] * math.pow(nnz + h["reg_alpha0"] * cols, h["reg_nu"]) / w0
    return h["lambda_"] / w0


def confidences(h, popularity, users, seg, r, missing=None):
    """st_score_confidences: the confidence-minus-one (float32) of each
    history entry (seg[i], r[i]) and the row's lambda, as training gives them
    (c / w0 - rho_s under popularity-weighted missing data: missing = rho)."""
    norm = 1.0
    if h["confidence"] == CONF_BM25:
        total = 0.0
        for v in r:
            total += float(v)
        mean = h["bm25_mean_rowsum"] if h["bm25_mean_rowsum"] > 0 else 1.0
        norm = (1.0 - h["bm25_b"]) + h["bm25_b"] * total / mean
    cm1 = np.empty(len(seg), dtype=F32)
    for i, (s, v) in enumerate(zip(seg, r)):
        idf = 0.0
        if h["confidence"] == CONF_BM25:
            idf = math.log(users) - math.log1p(float(popularity[s])) if users > 0 else -math.inf
        c = conf1(h, v, idf, norm)
        cm1[i] = c if missing is None else F32(c) + (F32(1) - missing[s])
    return cm1, row_lambda(h, len(seg), len(popularity))


def lookalike_query(h, users, GU, rows):
    """st_lookalike_query: LOOKALIKE's query (float32, k) for the seed
    vectors rows (S x k float32, distinct users): the seeds folded in as a
    segment against GU = U^T U (float64, over `users` rows), each seed pair
    at the typical value (eps under the log scheme, else 1; bm25: the idf of
    a segment of S users, a mean user), the row lambda of a segment with S
    users; solved in float64. The seeds' centroid (summed in double, in row
    order) when the system is not positive definite or v is not finite."""
    n = len(rows)
    r = h["eps"] if h["confidence"] == CONF_LOG and h["eps"] > 0 else 1.0
    idf = math.log(users) - math.log1p(n) if h["confidence"] == CONF_BM25 else 0.0
    cm1 = np.full(n, F32(conf1(h, r, idf, 1.0)), dtype=F32)
    v = foldin(GU, rows, np.arange(n), cm1, row_lambda(h, n, users))
    if v is None or not np.all(np.isfinite(v)):
        total = np.zeros(rows.shape[1], dtype=np.float64)
        for x in rows:
            total += x.astype(np.float64)
        v = (total / max(n, 1)).astype(F32)
    return v


def system(G, V, seg, cm1, lam):
    """W = V^T V + lambda I + sum_i cm1_i v_i v_i^T (float64), for history
    segments seg: the matrix of the exact per-user solve."""
    k = V.shape[1]
    Vs = V[np.asarray(seg, dtype=np.int64)].astype(np.float64)
    W = G + F32(lam) * np.eye(k)
    if len(seg):
        W = W + Vs.T @ (cm1.astype(np.float64)[:, None] * Vs)
    return W, Vs


def rhs_weights(seg, cm1, missing):
    """c / w0 of each history entry: cm1 + rho_s (1 + cm1 when uniform)."""
    if missing is None:
        return F32(1) + cm1
    return (cm1 + missing[np.asarray(seg, dtype=np.int64)]).astype(F32)


def foldin(G, V, seg, cm1, lam, missing=None):
    """st_als_foldin: the vector (float32) a user with this history gets,
    one exact solve; zeros for an empty history. None when the system is not
    positive definite."""
    k = V.shape[1]
    if len(seg) == 0:
        return np.zeros(k, dtype=F32)
    W, Vs = system(G, V, seg, cm1, lam)
    b = Vs.T @ rhs_weights(seg, cm1, missing).astype(np.float64)
    try:
        L = np.linalg.cholesky(W)
    except np.linalg.LinAlgError:
        return None
    return np.linalg.solve(L.T, np.linalg.solve(L, b)).astype(F32)


def explain(G, V, seg, cm1, lam, s, missing=None):
    """st_score_explain: what each history entry contributes to the fold-in
    score of segment s (float32 each), or None when not positive definite."""
    W, _ = system(G, V, seg, cm1, lam)
    try:
        L = np.linalg.cholesky(W)
    except np.linalg.LinAlgError:
        return None
    z = np.linalg.solve(L.T, np.linalg.solve(L, V[s].astype(np.float64))).astype(F32)
    rows = V[np.asarray(seg, dtype=np.int64)]
    return (rhs_weights(seg, cm1, missing) * dot_rows(rows, z)).astype(F32)


def gram(V, missing=None):
    """G = V^T V (V^T diag(rho) V under popularity-weighted missing data),
    in float64 from the float32 factors."""
    V64 = V.astype(np.float64)
    if missing is None:
        return V64.T @ V64
    return V64.T @ (missing.astype(np.float64)[:, None] * V64)
