#!/usr/bin/python3
"""Distributed training under MPI equals the single-process run.

mpirun --oversubscribe -np 2 and -np 3 on this host train the same events as
one process; the loss must agree within 1e-4 relative and every user's
predicted scores within 1e-3 (compared by id: ranks number ids differently).
Inputs mix a plain CSV split by byte ranges, a TSV, and a gzip file read by
line strides; time decay needs the newest event across ranks.
"""
import gzip
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
from starling import Model  # noqa: E402
from tap import STARLING, done, note, ok, skip_all, starling  # noqa: E402

if not shutil.which("mpirun"):
    skip_all("mpirun is not installed (Debian: openmpi-bin)")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_btl_vader_single_copy_mechanism="none", OMPI_MCA_rmaps_base_oversubscribe="1")
# Under `make asan`, Open MPI's plugins (unloaded at MPI_Finalize, so their
# frames cannot even be named) leak at exit; memory errors are still caught,
# and starling's own paths are leak-checked by the single-process tests.
if "ASAN_OPTIONS" in ENV:
    ENV["ASAN_OPTIONS"] += ":detect_leaks=0"


def mpirun(np_, *args):
    return subprocess.run(["mpirun", "--oversubscribe", "-np", str(np_), STARLING, *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=300)


def predictions(m, users, segments):
    ui = [m.user_index(u) for u in users]
    si = [m.segment_index(s) for s in segments]
    return m.U[ui].astype(float) @ m.V[si].astype(float).T


with tempfile.TemporaryDirectory() as d:
    p = lambda name: os.path.join(d, name)  # noqa: E731
    starling("synth", "-o", p("all.csv"), "--users", 4000, "--segments", 400, "--events", 90000, "--seed", 8)
    lines = open(p("all.csv")).read().splitlines()
    head, body = lines[0], lines[1:]
    third = len(body) // 3
    with open(p("a.csv"), "w") as f:
        f.write("\n".join([head] + body[:third]) + "\n")
    with open(p("b.tsv"), "w") as f:
        f.write("\n".join(line.replace(",", "\t") for line in body[third:2 * third]) + "\n")
    with gzip.open(p("c.csv.gz"), "wt") as f:
        f.write("\n".join([head] + body[2 * third:]) + "\n")
    inputs = [p("a.csv"), p("b.tsv"), p("c.csv.gz")]
    opts = ["--factors", 16, "--iterations", 6, "--seed", 3, "--half-life", "7d",
            "--kind-weight", "impression=0.2,click=1,follow=3,conversion=5"]
    # Under mpirun there is no validation holdout: compare with a run without one.
    starling("train", *inputs, "-o", p("single.model"), *opts, "--validation", 0, "-q")
    single = Model(p("single.model"))
    users, segments = single.user_ids, single.segment_ids
    ref = predictions(single, users, segments)
    for ranks in (2, 3):
        out = p(f"mpi{ranks}.model")
        r = mpirun(ranks, "train", *inputs, "-o", out, *opts)
        if not ok(r.returncode == 0, f"-np {ranks}: trains"):
            note(r.stderr[-2000:])
            continue
        ok(f"on {ranks} ranks" in r.stderr and "MPI: " in r.stderr, f"-np {ranks}: reports ranks and traffic")
        m = Model(out)
        ok(sorted(m.user_ids) == sorted(users) and sorted(m.segment_ids) == sorted(segments),
           f"-np {ranks}: the same users and segments")
        ok(m.header["nnz"] == single.header["nnz"] and m.header["events"] == single.header["events"],
           f"-np {ranks}: the same interactions and event count")
        rel = abs(m.header["final_loss"] - single.header["final_loss"]) / single.header["final_loss"]
        ok(rel < 1e-4, f"-np {ranks}: loss within 1e-4 relative ({rel:.1e})")
        diff = float(np.abs(predictions(m, users, segments) - ref).max())
        ok(diff < 1e-3, f"-np {ranks}: every prediction within 1e-3 (max diff {diff:.1e})")
        # The history equals the single run's, by id.
        def hist(model):
            h = {}
            for u in range(len(model.user_ids)):
                for q in range(model.hist_ptr[u], model.hist_ptr[u + 1]):
                    h[(model.user_ids[u], model.segment_ids[model.hist_idx[q]])] = float(model.hist_val[q])
            return h
        hs, hm = hist(single), hist(m)
        close = hs.keys() == hm.keys() and all(abs(hs[key] - hm[key]) <= 1e-5 * max(1.0, hs[key]) for key in hs)
        ok(close, f"-np {ranks}: the same history (values with decay, by id)")
        ok(m.meta.find(f"mpi_ranks={ranks}") >= 0, f"-np {ranks}: the model records the ranks")
    # A malformed line in another rank's part: FILE:LINE, exit 1, no model.
    bad = body[:]
    bad[-5] = "u1,s1,notanumber,click,1767225600"
    with open(p("bad.csv"), "w") as f:
        f.write("\n".join([head] + bad) + "\n")
    r = mpirun(2, "train", p("bad.csv"), "-o", p("bad.model"), "--factors", 8, "-q")
    ok(r.returncode != 0 and f"bad.csv:{len(bad) - 3}: bad weight" in r.stderr,
       f"malformed line on rank 1 is reported with its line ({r.stderr.strip()[-200:]})")
    ok(not os.path.exists(p("bad.model")), "and no model is written")
    r = mpirun(2, "train", p("all.csv"), "-o", p("x.model"), "--resume", p("single.model"))
    ok(r.returncode == 2 and "not supported under MPI" in r.stderr, "--resume under MPI is a usage error")
    r = mpirun(2, "train", p("all.csv"), "-o", p("x.model"), "--missing-weight", "popularity")
    ok(r.returncode == 2 and "--missing-weight popularity is not supported under MPI" in r.stderr and
       not os.path.exists(p("x.model")), "popularity-weighted missing data under MPI is a usage error")
done()
