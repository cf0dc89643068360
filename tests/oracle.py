"""Independent numpy formulas the tests check starling against, written from
docs/TRAINING.md, nothing shared with the C code or the starling package's
own kernels (python/starling/_kernels.py); and how two rankings that come
from solves in different precisions are compared."""
import numpy as np


def row_lambda(M, nnz):
    """The lambda of a row with nnz nonzeros: plain, or lambda (nnz +
    reg_alpha0 cols)^reg_nu for frequency-scaled regularisation, cols the
    other side's count (segments, for a user)."""
    h = M.header
    if h["regularization"] == 1:
        return h["lambda_"] * (nnz + h["reg_alpha0"] * h["segments"]) ** h["reg_nu"]
    return h["lambda_"]


def unobserved(M):
    """w0, the weight of a pair never observed (1 in files before it)."""
    w0 = M.header["unobserved_weight"]
    return w0 if w0 > 0 else 1.0


def foldin(M, idx, r):
    """The row the model M (a starling.Model) gives a user with segments idx
    and raw values r (log confidence), solved exactly in float64:
    (w0 V^T V + V_S^T (C_S - w0) V_S + lambda_row I) x = V_S^T C_S 1.
    Returns the system, the confidences and the row."""
    h = M.header
    assert h["confidence"] == 1, "foldin() implements the log confidence scheme"
    V = M.V.astype(np.float64)
    Vs = V[np.asarray(idx, dtype=np.int64)]
    c = 1 + h["alpha"] * np.log1p(np.asarray(r, dtype=np.float64) / h["eps"])
    w0 = unobserved(M)
    A = w0 * V.T @ V + Vs.T @ ((c - w0)[:, None] * Vs) + row_lambda(M, len(Vs)) * np.eye(V.shape[1])
    return A, c, np.linalg.solve(A, Vs.T @ c)


def lookalike(M, rows):
    """LOOKALIKE's query v for the seed model rows (docs/PROTOCOL.md): the
    seeds folded in as a new segment against the user factors U, solved
    exactly in float64:
    (w0 U^T U + (c - w0) S^T S + lambda_seg I) v = c S^T 1
    over the seed rows S, c the confidence of one pair at r = eps under the
    log scheme (1 when eps is 0: alpha log(1 + r/0) is no number) or at r = 1
    under the linear one, lambda_seg the row lambda of a segment with |S|
    users (cols: the users)."""
    h = M.header
    assert h["confidence"] in (0, 1), "lookalike() implements the linear and log confidence schemes"
    U = M.U.astype(np.float64)
    S = U[sorted(set(rows))]
    if h["confidence"] == 1:
        c = 1 + h["alpha"] * np.log(2) if h["eps"] > 0 else 1.0
    else:
        c = 1 + h["alpha"]
    lam = h["lambda_"]
    if h["regularization"] == 1:
        lam *= (len(S) + h["reg_alpha0"] * M.m) ** h["reg_nu"]
    w0 = unobserved(M)
    A = w0 * U.T @ U + (c - w0) * S.T @ S + lam * np.eye(U.shape[1])
    return np.linalg.solve(A, c * S.sum(axis=0))


def close(a, b, tol=1e-5):
    """The same ranking up to tol: scores within tol position by position, and
    an id out of place only where another scored within tol of it."""
    if len(a) != len(b):
        return False
    for (ia, sa), (ib, sb) in zip(a, b):
        if abs(sa - sb) > tol:
            return False
    for p, (i, s) in enumerate(a):
        if b[p][0] == i:
            continue
        if not any(bi == i and abs(bs - s) <= 2 * tol for bi, bs in b) and abs(s - b[-1][1]) > 2 * tol:
            return False
    return True
