#!/usr/bin/python3
"""Training control from the command line: resume and checkpoints give
bit-identical factors, Ctrl-C saves a usable model, threads do not change a
bit, and the fused loss matches an independent numpy computation."""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
from starling import Model  # noqa: E402
from tap import STARLING, done, ok, starling  # noqa: E402


def same_factors(a, b):
    return np.array_equal(a.U.view(np.uint32), b.U.view(np.uint32)) and \
        np.array_equal(a.V.view(np.uint32), b.V.view(np.uint32))


with tempfile.TemporaryDirectory() as d:
    ev = os.path.join(d, "ev.csv.gz")
    starling("synth", "-o", ev, "--users", 3000, "--segments", 300, "--events", 60000, "--seed", 4)
    p = lambda name: os.path.join(d, name)  # noqa: E731
    common = ["--factors", 16, "--seed", 9, "-q"]

    # Resume: 3 iterations, then resume to 6, equals 6 straight. (A finished
    # run folds its validation users back in exactly, so resuming from one
    # starts those rows elsewhere: --validation 0 here; checkpoints and an
    # interrupted run, below, are saved before that and resume exactly.)
    nv = ["--validation", 0]
    starling("train", ev, "-o", p("full.model"), "--iterations", 6, *common, *nv)
    starling("train", ev, "-o", p("half.model"), "--iterations", 3, *common, *nv)
    starling("train", ev, "-o", p("resumed.model"), "--iterations", 6, "--resume", p("half.model"), *common, *nv)
    full, resumed = Model(p("full.model")), Model(p("resumed.model"))
    ok(same_factors(full, resumed), "resumed run is bit-identical to the uninterrupted one")
    ok(np.array_equal(full.loss, resumed.loss) and resumed.header["iterations"] == 6,
       "resumed run carries the loss history")
    for solver in ("cholesky",):
        starling("train", ev, "-o", p("c6.model"), "--iterations", 4, "--solver", solver, *common)
        starling("train", ev, "-o", p("c2.model"), "--iterations", 2, "--solver", solver, *common)
        starling("train", ev, "-o", p("c2r.model"), "--iterations", 4, "--resume", p("c2.model"), *common)
        ok(same_factors(Model(p("c6.model")), Model(p("c2r.model"))), f"{solver}: resume is bit-identical too")

    # Input order does not matter: every row starts from a stream derived from
    # its id, so shuffled events give the same model up to float rounding.
    import gzip
    import random
    lines = gzip.open(ev, "rt").read().splitlines()
    body = lines[1:]
    random.Random(1).shuffle(body)
    shuffled = p("shuffled.csv")
    with open(shuffled, "w") as f:
        f.write("\n".join([lines[0]] + body) + "\n")
    # With the validation holdout on (the default): its users and held-out
    # segments are chosen by hashes of the ids, not by position.
    starling("train", ev, "-o", p("full_v.model"), "--iterations", 6, *common)
    starling("train", shuffled, "-o", p("shuf.model"), "--iterations", 6, *common)
    full, sh = Model(p("full_v.model")), Model(p("shuf.model"))
    ok(full.header["flags"] & 1 and sh.header["prior_weight"] == full.header["prior_weight"],
       "shuffled input: both calibrated, the same prior weight fitted")
    perm_u = [sh.user_index(u) for u in full.user_ids]
    perm_s = [sh.segment_index(s) for s in full.segment_ids]
    pred_full = full.U.astype(float) @ full.V.astype(float).T
    pred_shuf = sh.U[perm_u].astype(float) @ sh.V[perm_s].astype(float).T
    diff = float(np.abs(pred_full - pred_shuf).max())
    ok(diff < 1e-3, f"shuffled input: the same predictions for every user (max diff {diff:.1e})")

    # Threads: 1 and 2 give the same bits.
    starling("train", ev, "-o", p("t1.model"), "--iterations", 3, "--threads", 1, *common)
    starling("train", ev, "-o", p("t2.model"), "--iterations", 3, "--threads", 2, *common)
    t1, t2 = Model(p("t1.model")), Model(p("t2.model"))
    ok(same_factors(t1, t2) and t1.header["final_loss"] == t2.header["final_loss"],
       "1 and 2 threads: bit-identical factors and loss")

    # Resume refuses other data.
    other = os.path.join(d, "other.csv")
    starling("synth", "-o", other, "--users", 100, "--segments", 20, "--events", 500, "--seed", 5)
    r = subprocess.run([STARLING, "train", other, "-o", p("x.model"), "--resume", p("half.model"), "-q"],
                       capture_output=True, text=True)
    ok(r.returncode == 1 and "trained on different data" in r.stderr, "resume with other data is refused")

    # Checkpoints: killed (SIGKILL) after two checkpoints, the file is a usable
    # model, and resuming from it equals the uninterrupted run.
    big = os.path.join(d, "big.csv.gz")
    starling("synth", "-o", big, "--users", 60000, "--segments", 3000, "--events", 1500000, "--seed", 6)
    bigc = ["--factors", 32, "--seed", 3, "--threads", 2]
    starling("train", big, "-o", p("big_full.model"), "--iterations", 8, *bigc, "-q")
    proc = subprocess.Popen([STARLING, "train", big, "-o", p("ck.model"), "--iterations", "8",
                             "--checkpoint-every", "1", *map(str, bigc)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = 0
    deadline = time.time() + 120
    for line in proc.stderr:
        if line.startswith("checkpoint:"):
            seen += 1
            if seen == 2:
                proc.send_signal(signal.SIGKILL)
                break
        if time.time() > deadline:
            break
    proc.wait()
    ck = Model(p("ck.model"))
    ok(seen == 2 and 2 <= ck.header["iterations"] < 8, f"killed after checkpoints: model at iteration "
       f"{ck.header['iterations']} loads")
    starling("train", big, "-o", p("ck_resumed.model"), "--iterations", 8, "--resume", p("ck.model"), *bigc, "-q")
    ok(same_factors(Model(p("big_full.model")), Model(p("ck_resumed.model"))),
       "resumed from a checkpoint: bit-identical to the uninterrupted run")

    # Ctrl-C: stops after the iteration in progress and saves a usable model.
    proc = subprocess.Popen([STARLING, "train", big, "-o", p("int.model"), "--iterations", "50", *map(str, bigc)],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    for line in proc.stderr:
        if line.startswith("iteration 1/"):
            proc.send_signal(signal.SIGINT)
            break
        if time.time() > deadline:
            break
    rest = proc.stderr.read()
    proc.wait()
    ok(proc.returncode == 130, f"Ctrl-C exits 130 (got {proc.returncode})")
    ok("interrupted: saved the model after iteration" in rest, "and says where it stopped")
    m = Model(p("int.model"))
    ok(1 <= m.header["iterations"] < 50 and len(m.loss) == m.header["iterations"],
       f"the saved model is whole ({m.header['iterations']} iterations)")
    out = starling("segments", p("int.model"), m.user_ids[0], "-k", 3)
    ok(len(out.splitlines()) == 3, "and answers queries")

    # The loss reported equals numpy's objective from the model's factors.
    starling("train", ev, "-o", p("t0.model"), "--iterations", 3, *common, *nv)
    mm = Model(p("t0.model"))
    m_, n_ = len(mm.user_ids), len(mm.segment_ids)
    R = np.zeros((m_, n_))
    for u in range(m_):
        for q in range(mm.hist_ptr[u], mm.hist_ptr[u + 1]):
            R[u, mm.hist_idx[q]] = mm.hist_val[q]
    P = (R > 0).astype(float)
    # defaults: log confidence, alpha 10, eps 1; unobserved pairs weigh 0.3
    C = np.where(P > 0, 1 + 10 * np.log1p(R), 0.3)
    E = mm.U.astype(float) @ mm.V.astype(float).T
    # defaults: frequency-scaled lambda 1, nu 1, alpha0 0: lambda x the row's nonzeros
    lu, ls = P.sum(axis=1), P.sum(axis=0)
    obj = (C * (P - E) ** 2).sum() + (lu[:, None] * mm.U.astype(float) ** 2).sum() + \
        (ls[:, None] * mm.V.astype(float) ** 2).sum()
    rel = abs(obj / C.sum() - mm.header["final_loss"]) / mm.header["final_loss"]
    ok(rel < 1e-5, f"reported loss equals numpy's objective (relative difference {rel:.1e})")
done()
