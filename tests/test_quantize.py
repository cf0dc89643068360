#!/usr/bin/python3
"""int8 user factors: a quarter of the bytes, recall@20 on Last.fm within 1%
of float32, and every answer (CLI, server, audience over users) computed
from exactly the dequantized floats."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
from serve import Server, make_model  # noqa: E402
from starling import Model  # noqa: E402
from tap import SHARED, STARLING, done, note, ok, skip_all, starling  # noqa: E402

try:
    import redis
except ImportError:
    redis = None

with tempfile.TemporaryDirectory() as d:
    model, ev = make_model(d, users=2000, segments=300, events=40000, seed=4)
    q8 = os.path.join(d, "q8.model")
    starling("quantize", model, "-o", q8)
    f, q = Model(model), Model(q8)
    ok(q.header["flags"] & 2 and q.header["version"] == 2, "the int8 model says so in its header")
    ok(os.path.getsize(q8) < os.path.getsize(model), f"smaller file ({os.path.getsize(q8)} vs {os.path.getsize(model)} bytes)")
    err = float(np.abs(q.U - f.U).max() / np.abs(f.U).max())
    ok(err < 0.01, f"dequantized factors within 1% of the float32 ones (max error {err:.4f} of the largest)")
    # The CLI ranks from the dequantized floats.
    u = q.user_ids[17]
    got = [line.split("\t")[0] for line in starling("segments", q8, u, "-k", 10).splitlines()]
    sc = q.row_scores(17)
    want = [q.segment_ids[i] for i in np.argsort(-sc, kind="stable")[:10]]
    ok(got == want, "segments on the int8 model ranks by the dequantized vector")
    trained_q8 = os.path.join(d, "t8.model")
    starling("train", ev, "-o", trained_q8, "--factors", 16, "--iterations", 5, "--seed", 4, "--quantize", "int8", "-q",
             "--validation", 0)
    t8 = Model(trained_q8)
    ok(np.array_equal(t8.U, q.U), "train --quantize int8 writes the same model as quantize")
    r = subprocess.run([STARLING, "train", ev, "-o", os.path.join(d, "x.model"), "--resume", q8, "-q"],
                       capture_output=True, text=True)
    ok(r.returncode == 1 and "int8" in r.stderr, "resuming from an int8 model is refused with a reason")
    # Export writes the dequantized floats; import gives a float model that answers identically.
    starling("export", q8, os.path.join(d, "exp"))
    ok(np.array_equal(np.load(os.path.join(d, "exp", "user_factors.npy")), q.U), "export writes the dequantized floats")
    # The server: SEGMENTS, SCORE and AUDIENCE from the dequantized floats.
    if redis is not None:
        srv = Server(q8, d=d)
        c = redis.Redis(host="127.0.0.1", port=srv.port)
        rep = c.execute_command("ZREVRANGE", f"u:{u}", 0, 9)
        ok([x.decode() for x in rep] == want, "the server's view of the int8 user ranks the same")
        seg = q.segment_ids[5]
        aud = c.execute_command("AUDIENCE", seg, "COUNT", 20)
        scores = q.U.astype(np.float32) @ q.V[5].astype(np.float32)
        want_aud = [q.user_ids[i] for i in np.argsort(-scores, kind="stable")[:20]]
        ok([aud[i].decode() for i in range(0, len(aud), 2)] == want_aud, "AUDIENCE scans the int8 rows as numpy does")
        srv.stop()
    # Quality on real data: recall@20 within 1% of float32.
    data = os.path.join(SHARED, "data", "lastfm-2k", "user_artists.dat")
    if os.path.exists(data):
        rows = open(data).read().splitlines()[1:]
        rng = np.random.default_rng(7)
        by_user = {}
        for line in rows:
            uu, a, w = line.split("\t")
            by_user.setdefault(uu, []).append((a, w))
        train, test = [], []
        for uu, items in by_user.items():
            perm = rng.permutation(len(items))
            n_test = int(round(0.2 * len(items))) if len(items) >= 5 else 0
            for i, (a, w) in enumerate(items):
                (test if i in set(perm[:n_test].tolist()) else train).append(f"{uu}\t{a}\t{w}")
        tr, te = os.path.join(d, "tr.tsv"), os.path.join(d, "te.tsv")
        open(tr, "w").write("\n".join(train) + "\n")
        open(te, "w").write("\n".join(test) + "\n")
        fm, qm = os.path.join(d, "lf.model"), os.path.join(d, "lf8.model")
        starling("train", tr, "-o", fm, "--seed", 1, "-q")
        starling("quantize", fm, "-o", qm)
        import json
        rf = json.loads(starling("eval", fm, te, "-k", 20, "--json"))
        rq = json.loads(starling("eval", qm, te, "-k", 20, "--json"))
        a, b = rf["rankers"]["model"]["recall"][0]["mean"], rq["rankers"]["model"]["recall"][0]["mean"]
        note(f"Last.fm recall@20 (20% held out per user, seed 7): float32 {a:.4f}, int8 {b:.4f}")
        ok(abs(a - b) <= 0.01 * a, f"Last.fm recall@20: int8 {b:.4f} within 1% of float32 {a:.4f}")
    else:
        note(f"{data} absent: the Last.fm quality check is skipped")
done()
