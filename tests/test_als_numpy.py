#!/usr/bin/python3
"""starling's ALS against an independent numpy implementation of the same objective.

Both start from the same initial factors (a model trained for 0 iterations
holds them), run the same number of exact (Cholesky) iterations, and must end
with the same loss and the same predictions U V^T; factors themselves may
differ only by float rounding. The numpy side is written from the formula in
src/als.h, in float64, with dense matrices, nothing shared with the C code.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
from starling import Model  # noqa: E402
from tap import STARLING, done, ok  # noqa: E402


def run(*args):
    subprocess.run([STARLING, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def numpy_als(R, X, Y, lam, alpha, conf, eps, iters, freq, w0, expo=None):
    """Dense implicit ALS in float64: c = 1 + alpha f(r) where p = [r > 0],
    w0 on the unobserved pairs, or with expo (popularity-weighted missing
    data, He et al. 2016) w0 n f_s^expo / sum_j f_j^expo on those of segment s,
    f_s its share of the users; a row's lambda is lam, or lam times its
    nonzeros when freq (frequency-scaled, nu 1, alpha0 0)."""
    P = (R > 0).astype(float)
    F = R if conf == "linear" else np.log1p(R / eps)
    miss = np.full(R.shape[1], w0)
    if expo is not None:
        share = P.sum(axis=0) / R.shape[0]
        miss = w0 * R.shape[1] * share ** expo / (share ** expo).sum()
    C = np.where(P > 0, 1.0 + alpha * F, miss[None, :])
    k = X.shape[1]
    lu = lam * P.sum(axis=1) if freq else np.full(X.shape[0], lam)
    ls = lam * P.sum(axis=0) if freq else np.full(Y.shape[0], lam)
    for _ in range(iters):
        for u in range(X.shape[0]):
            if P[u].sum() == 0:
                X[u] = 0
                continue
            A = (Y.T * C[u]) @ Y + lu[u] * np.eye(k)
            X[u] = np.linalg.solve(A, (Y.T * C[u]) @ P[u])
        for s in range(Y.shape[0]):
            if P[:, s].sum() == 0:
                Y[s] = 0
                continue
            A = (X.T * C[:, s]) @ X + ls[s] * np.eye(k)
            Y[s] = np.linalg.solve(A, (X.T * C[:, s]) @ P[:, s])
    E = X @ Y.T
    loss = (C * (P - E) ** 2).sum() + (lu[:, None] * X ** 2).sum() + (ls[:, None] * Y ** 2).sum()
    return X, Y, loss, C


def main():
    rng = np.random.default_rng(11)
    m, n, k = 60, 35, 5
    lines = []
    R = np.zeros((m, n))
    for u in range(m):
        for s in range(n):
            if rng.random() < 0.12 or s == u % n:
                c = int(rng.integers(1, 30))
                R[u, s] += c
                lines.append(f"user{u},seg{s},{c}")
    with tempfile.TemporaryDirectory() as d:
        ev = os.path.join(d, "ev.csv")
        with open(ev, "w") as f:
            f.write("\n".join(lines) + "\n")
        # The defaults (log confidence, frequency-scaled regularisation, unobserved
        # pairs weighted 0.3), and the linear confidence, plain lambda, weight 1.
        # With popularity-weighted missing data too, exact and by CG (CG with
        # more steps than the rank solves each row to float precision).
        for conf, alpha, reg, w0, expo, solver in (("linear", 0.5, "plain", 1.0, None, "cholesky"),
                                                    ("log", 10.0, "frequency", 0.3, None, "cholesky"),
                                                    ("log", 10.0, "frequency", 0.3, 0.5, "cholesky"),
                                                    ("log", 1.0, "frequency", 1.0, 1.5, "cg")):
            common = ["--factors", str(k), "--lambda", "0.2", "--alpha", str(alpha), "--confidence", conf,
                      "--regularization", reg, "--unobserved-weight", str(w0), "--cg-steps", "12",
                      "--solver", solver, "--seed", "5", "--validation", "0", "-q"]
            label = conf
            if expo is not None:
                common += ["--missing-weight", "popularity", "--missing-exponent", str(expo)]
                label = f"{conf}, popularity {expo} ({solver})"
            run("train", ev, "-o", os.path.join(d, "init.model"), "--iterations", "0", *common)
            run("train", ev, "-o", os.path.join(d, "final.model"), "--iterations", "8", *common)
            init = Model(os.path.join(d, "init.model"))
            final = Model(os.path.join(d, "final.model"))
            # Rows of R in the model's id order.
            ui = [int(u[4:]) for u in init.user_ids]
            si = [int(s[3:]) for s in init.segment_ids]
            Rm = R[np.ix_(ui, si)]
            # --eps defaults to the median pair value, to 1/16 of an octave below.
            vals = np.sort(Rm[Rm > 0])
            med = vals[(len(vals) + 1) // 2 - 1]
            eps = 2.0 ** (np.floor(16 * np.log2(med)) / 16)
            if conf == "log" and expo is None:
                ok(abs(final.header["eps"] - eps) < 1e-12 * eps,
                   f"log: eps auto is the median pair value's bucket ({final.header['eps']:.6g}, numpy {eps:.6g})")
            X, Y, loss, C = numpy_als(Rm.copy(), init.U.astype(float).copy(), init.V.astype(float).copy(),
                                      0.2, alpha, conf, eps, 8, reg == "frequency", w0, expo)
            if expo is not None:
                share = (Rm > 0).sum(axis=0) / m
                rho = n * share ** expo / (share ** expo).sum()
                ok(final.missing is not None and np.abs(final.missing - rho).max() < 1e-5,
                   f"{label}: the model's weights are w_s / w0 = n f_s^e / sum f^e")
            weight = C.sum()  # w0 per unobserved pair, c per observed one
            starling_loss = final.header["final_loss"] * weight
            rel = abs(starling_loss - loss) / loss
            ok(rel < 1e-4, f"{label}: loss {starling_loss:.6f} equals numpy's {loss:.6f} (relative {rel:.2e})")
            E_np = X @ Y.T
            E_st = final.U.astype(float) @ final.V.astype(float).T
            diff = np.abs(E_np - E_st).max()
            ok(diff < 1e-3, f"{label}: predictions U V^T equal numpy's (max diff {diff:.2e})")
            # The history in the model is the matrix numpy used.
            H = np.zeros((m, n))
            for u in range(m):
                for q in range(final.hist_ptr[u], final.hist_ptr[u + 1]):
                    H[u, final.hist_idx[q]] = final.hist_val[q]
            ok(np.array_equal(H, Rm), f"{label}: the model's history is the input matrix")
    done()


if __name__ == "__main__":
    main()
