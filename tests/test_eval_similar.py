#!/usr/bin/python3
"""`starling eval --lookalike`'s SIMILAR figures recomputed in numpy.

A small synthetic log is split two ways at once: a fifth of the users (with
at least 6 segments) are cold, every one of their segments in the test file;
the other users hold out a fifth of their segments (those with at least 5).
The truth of SIMILAR is the engagement the model did not train on: the known
users' held-out segments and the cold users' every segment, folded in or
ranked. Here numpy builds that truth, the three rankers (the served fold-in
from the Python reader's kernels, the factor cosine, popularity), each
overlap@10, the model's paired gain over each ranker and its interval, and
compares them with eval's JSON. A truth without the cold users' fold-in
segments (what eval counted before) gives other figures: leaving them out
fails here.
"""
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
from tap import STARLING, done, note, ok, skip_all  # noqa: E402

try:
    import numpy as np
    from starling import _kernels as K
    from starling._file import ModelFile
except ImportError as e:
    skip_all(f"numpy is missing ({e}); make test installs python3-numpy")


def run(*args):
    r = subprocess.run([STARLING] + [str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"starling {' '.join(map(str, args))} failed: {r.stderr}")
    return r.stdout


def write(path, rows):
    with open(path, "w") as f:
        f.write("user\tsegment\tweight\n")
        for u, s in rows:
            f.write(f"{u}\t{s}\t1\n")


def top10(v, s):
    """The 10 best of v but s: higher value, then lower index (st_topk's order)."""
    v = np.asarray(v, dtype=np.float64).copy()
    v[s] = -np.inf
    return np.lexsort((np.arange(len(v)), -v))[:10]


def truth_of(rows, n, s, counts):
    """The 10 segments most co-engaged with s: the cosine of the user sets, as
    eval computes it (in double, kept as float), at least 2 users in common."""
    co = np.zeros(n)
    for r in rows:
        if s in r:
            for t in r:
                co[t] += 1
    c = (co / np.sqrt(counts[s] * np.maximum(counts, 1))).astype(np.float32).astype(np.float64)
    c[(co < 2) | (np.arange(n) == s)] = -np.inf
    t = np.flatnonzero(np.isfinite(c))
    return t[np.lexsort((t, -c[t]))][:10]


def stat(x):
    x = np.asarray(x, dtype=np.float64)
    return x.mean(), 1.959963984540054 * x.std(ddof=1) / np.sqrt(len(x))


with tempfile.TemporaryDirectory() as d:
    ev = os.path.join(d, "ev.csv")
    run("synth", "-o", ev, "--users", 3000, "--segments", 120, "--events", 60000, "--seed", 7)
    by_user = {}
    with open(ev) as f:
        next(f)
        for line in f:
            c = line.split(",")
            by_user.setdefault(c[0], set()).add(c[1])
    rng = random.Random(11)
    train, test, cold_rows, known_held = [], [], {}, {}
    for u in sorted(by_user):
        segs = sorted(by_user[u])
        if len(segs) >= 6 and rng.random() < 0.2:
            test += [(u, s) for s in segs]
            cold_rows[u] = segs
            continue
        rng.shuffle(segs)
        h = max(1, round(0.2 * len(segs))) if len(segs) >= 5 else 0
        test += [(u, s) for s in segs[:h]]
        train += [(u, s) for s in segs[h:]]
        if h:
            known_held[u] = segs[:h]
    write(os.path.join(d, "train.tsv"), train)
    write(os.path.join(d, "test.tsv"), test)
    model = os.path.join(d, "m.model")
    run("train", os.path.join(d, "train.tsv"), "-o", model, "-q", "--threads", 2)
    j = json.loads(run("eval", model, os.path.join(d, "test.tsv"), "-k", 10, "--lookalike", "--baselines", "none",
                       "--validation", 0, "--json", "-q"))["similar"]

    mf = ModelFile(model, verify=False)
    n, h = mf.n, mf.header
    sid = {mf.segment_table.name(i): i for i in range(n)}
    V = np.asarray(mf.V, dtype=np.float64)
    hist = np.asarray(mf.hist_idx, dtype=np.int64)
    pop = np.bincount(hist, minlength=n).astype(np.float64)
    # Each test user's engagement the model did not train on (segments it knows).
    rows = [sorted({sid[s] for s in segs if s in sid}) for segs in cold_rows.values()]
    known_rows = [sorted({sid[s] for s in segs if s in sid}) for segs in known_held.values()]
    ok(j["truth_cold_users"] == len(rows) and j["truth_known_users"] == len(known_rows),
       f"the truth comes from {j['truth_cold_users']} cold and {j['truth_known_users']} known users "
       f"(numpy: {len(rows)} and {len(known_rows)})")
    rows += known_rows
    counts = np.zeros(n)
    for r in rows:
        counts[r] += 1
    ok_ = np.flatnonzero(counts >= 5)
    order = ok_[np.lexsort((ok_, -counts[ok_]))][:200]
    q = K.prior(pop, mf.prior_linear).astype(np.float64)
    w = float(h["prior_weight"])
    G = K.gram(mf.V)
    r0 = h["eps"] if h["confidence"] == K.CONF_LOG and h["eps"] > 0 else 1.0
    norms = np.linalg.norm(V, axis=1)
    ov = {"model": [], "factor cosine": [], "popularity": []}
    for s in order:
        truth = truth_of(rows, n, s, counts)
        if len(truth) == 0:
            continue
        cm1, lam = K.confidences(h, mf.popularity, mf.m, [s], [r0])
        x = K.foldin(G, mf.V, [s], cm1, lam).astype(np.float64)
        ranked = {"model": top10(V @ x + w * q, s),
                  "factor cosine": top10((V @ V[s]) / np.where(norms * norms[s] > 0, norms * norms[s], np.inf), s),
                  "popularity": top10(pop, s)}
        for name, top in ranked.items():
            ov[name].append(len(set(top) & set(truth)) / len(truth))
    note(f"{len(ov['model'])} segments; overlap@10 " +
         ", ".join(f"{k} {np.mean(v):.4f}" for k, v in ov.items()))
    ok(j["segments"] == len(ov["model"]), f"segments evaluated: eval {j['segments']}, numpy {len(ov['model'])}")
    for name, v in ov.items():
        mean, half = stat(v)
        got = j["rankers"][name]["overlap_at_10"]
        ok(abs(got["mean"] - mean) < 1e-12 and abs(got["ci95"] - half) < 1e-12,
           f"{name}: overlap@10 {got['mean']:.6f} +- {got['ci95']:.6f} (numpy {mean:.6f} +- {half:.6f})")
        if name != "model":
            gm, gh = stat(np.array(ov["model"]) - np.array(v))
            g = j["rankers"][name]["model_gain"]
            ok(abs(g["mean"] - gm) < 1e-12 and abs(g["ci95"] - gh) < 1e-12,
               f"the model's paired gain over {name}: {g['mean']:+.6f} +- {g['ci95']:.6f} "
               f"(numpy {gm:+.6f} +- {gh:.6f})")
    # The figures do not depend on the order of the test file's rows (equal
    # cosines in the truth go to the lower segment, whichever came first).
    shuffled = test[:]
    random.Random(5).shuffle(shuffled)
    write(os.path.join(d, "shuffled.tsv"), shuffled)
    j2 = json.loads(run("eval", model, os.path.join(d, "shuffled.tsv"), "-k", 10, "--lookalike", "--baselines",
                        "none", "--validation", 0, "--json", "-q"))["similar"]
    ok(j2 == j, "the same test rows in another order give the same SIMILAR figures")

    # No figures, and the reason: new users only (LOOKALIKE needs held-out
    # users the model knows), and one held-out segment per known user (no
    # segment is co-engaged with another: SIMILAR has no truth).
    write(os.path.join(d, "cold.tsv"), [(u, s) for u in cold_rows for s in cold_rows[u]])
    jc = json.loads(run("eval", model, os.path.join(d, "cold.tsv"), "-k", 10, "--lookalike", "--baselines", "none",
                        "--validation", 0, "--json", "-q"))
    ok(jc["lookalike"]["segments"] == 0 and "a holdout split measures LOOKALIKE" in jc["lookalike"].get("skipped", "")
       and jc["similar"]["segments"] > 0, f"new users only: LOOKALIKE skipped ({jc['lookalike'].get('skipped')}), "
       f"SIMILAR over {jc['similar']['segments']} segments")
    write(os.path.join(d, "one.tsv"), [(u, segs[0]) for u, segs in known_held.items()])
    one = ["eval", model, os.path.join(d, "one.tsv"), "-k", 10, "--lookalike", "--baselines", "none",
           "--validation", 0, "-q"]
    jo = json.loads(run(*one, "--json"))
    ok(jo["lookalike"]["segments"] > 0 and jo["similar"]["segments"] == 0
       and "2 of them in common" in jo["similar"].get("skipped", "")
       and "SIMILAR: no segment has 5 users" in run(*one) and "similar:" not in run(*one, "--csv"),
       f"one held-out segment per user: LOOKALIKE over {jo['lookalike']['segments']} segments, SIMILAR says why it "
       f"has none ({jo['similar'].get('skipped')}), and the CSV has no similar rows")
done()
