#!/usr/bin/python3
"""export and import: numpy reads what starling writes, an export imports back
bit-exactly, and factors trained elsewhere (.npy from numpy, Spark-style text,
JSON lines) become a model that scores exactly as numpy does."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import numpy as np  # noqa: E402
from starling import Model  # noqa: E402
from tap import STARLING, done, ok, starling  # noqa: E402


def fails(args, fragment):
    r = subprocess.run([STARLING, *map(str, args)], capture_output=True, text=True)
    return r.returncode == 1 and fragment in r.stderr, r.stderr.strip()


with tempfile.TemporaryDirectory() as d:
    p = lambda name: os.path.join(d, name)  # noqa: E731
    starling("synth", "-o", p("ev.csv"), "--users", 800, "--segments", 120, "--events", 15000, "--seed", 2)
    # Ids with a comma and a quote survive the history CSV.
    with open(p("ev.csv"), "a") as f:
        f.write('"odd, ""user""",interest:sports:00,2\n')
    starling("train", p("ev.csv"), "-o", p("m.model"), "--factors", 8, "--iterations", 4, "-q")
    m = Model(p("m.model"))
    starling("export", p("m.model"), p("exp"))
    U, V = np.load(p("exp/user_factors.npy")), np.load(p("exp/segment_factors.npy"))
    ok(U.dtype == np.float32 and U.shape == (len(m.user_ids), 8) and V.shape == (len(m.segment_ids), 8),
       "numpy reads the exported .npy: float32, one row per id")
    ok(np.array_equal(U, m.U) and np.array_equal(V, m.V), "exported factors equal the model's bit for bit")
    users = open(p("exp/users.txt")).read().split("\n")[:-1]
    ok(users == m.user_ids.tolist(), "users.txt lists the ids in row order")
    meta = json.load(open(p("exp/model.json")))
    ok(meta["factors"] == 8 and meta["iterations"] == 4 and meta["confidence"] == "log", "model.json has the header")

    starling("import", p("exp"), "-o", p("back.model"))
    b = Model(p("back.model"))
    ok(np.array_equal(b.U.view(np.uint32), m.U.view(np.uint32)) and
       np.array_equal(b.V.view(np.uint32), m.V.view(np.uint32)), "export then import: factors bit-exact")
    ok(b.user_ids.tolist() == m.user_ids.tolist() and b.segment_ids.tolist() == m.segment_ids.tolist(),
       "the same ids in the same order")
    ok(np.array_equal(b.hist_ptr, m.hist_ptr) and np.array_equal(b.hist_idx, m.hist_idx) and
       np.array_equal(b.hist_val, m.hist_val), "the same history")
    ok(b.header["fingerprint"] == m.header["fingerprint"], "the same data fingerprint")
    u0 = m.user_ids[5]
    ok(starling("segments", p("back.model"), u0, "-k", 5, "--exclude-seen") ==
       starling("segments", p("m.model"), u0, "-k", 5, "--exclude-seen"), "answers like the original")

    # Factors trained elsewhere: float64 Fortran-order .npy written by numpy.
    rng = np.random.default_rng(3)
    Uo, Vo = rng.normal(size=(50, 6)), rng.normal(size=(30, 6))
    np.save(p("u.npy"), np.asfortranarray(Uo))
    np.save(p("v.npy"), Vo)
    with open(p("u.txt"), "w") as f:
        f.write("\n".join(f"user{i}" for i in range(50)) + "\n")
    with open(p("v.txt"), "w") as f:
        f.write("\n".join(f"seg{i}" for i in range(30)) + "\n")
    starling("import", "--user-factors", p("u.npy"), "--user-ids", p("u.txt"), "--segment-factors", p("v.npy"),
             "--segment-ids", p("v.txt"), "-o", p("np.model"))
    out = starling("score", p("np.model"), "user7", "seg3", "seg11").splitlines()
    want = (Uo[7].astype(np.float32) @ Vo[[3, 11]].astype(np.float32).T)
    got = [float(line.split("\t")[1]) for line in out]
    ok(np.allclose(got, want, atol=1e-5), f"numpy .npy factors score as numpy does ({got} vs {want.tolist()})")

    # Spark-style text `id,[f1, f2, ...]` and JSON lines.
    with open(p("u.csv"), "w") as f:
        f.write("id,features\n")
        for i in range(50):
            f.write(f"{i},[{', '.join(repr(float(x)) for x in Uo[i])}]\n")
    with open(p("v.json"), "w") as f:
        for i in range(30):
            f.write(json.dumps({"id": f"seg{i}", "features": Vo[i].tolist()}) + "\n")
    starling("import", "--user-factors", p("u.csv"), "--segment-factors", p("v.json"), "-o", p("sp.model"))
    out = starling("score", p("sp.model"), "7", "seg3").split("\t")
    ok(abs(float(out[1]) - float(Uo[7].astype(np.float32) @ Vo[3].astype(np.float32))) < 1e-5,
       "Spark-style text and JSON-lines factors score as numpy does")
    # With the events they were trained on: --exclude-seen works.
    with open(p("hist.csv"), "w") as f:
        f.write("7,seg3,4\n7,seg5,1\n")
    starling("import", "--user-factors", p("u.csv"), "--segment-factors", p("v.json"), "--history", p("hist.csv"),
             "-o", p("sph.model"))
    seen = starling("segments", p("sph.model"), "7", "-k", 30, "--exclude-seen")
    ok("seg3\t" not in seen and "seg5\t" not in seen and len(seen.splitlines()) == 28,
       "with --history, --exclude-seen leaves out the user's segments")

    # Bad inputs: a clear error each.
    with open(p("bad_k.csv"), "w") as f:
        f.write("a,1,2\nb,1,2,3\n")
    r = fails(["import", "--user-factors", p("bad_k.csv"), "--segment-factors", p("v.json"), "-o", p("x.model")],
              "bad_k.csv:2: 3 values, but earlier rows have 2")
    ok(r[0], f"rows of different lengths ({r[1]})")
    with open(p("dup.csv"), "w") as f:
        f.write("a,1,2\na,3,4\n")
    r = fails(["import", "--user-factors", p("dup.csv"), "--segment-factors", p("v.json"), "-o", p("x.model")],
              "dup.csv:2: id 'a' appears twice")
    ok(r[0], f"duplicate id ({r[1]})")
    r = fails(["import", "--user-factors", p("u.csv"), "--segment-factors", p("v.json"), "-o", p("x.model")],
              "")
    ok(not r[0], "a valid pair of files imports")
    with open(p("short.txt"), "w") as f:
        f.write("user0\nuser1\n")
    r = fails(["import", "--user-factors", p("u.npy"), "--user-ids", p("short.txt"), "--segment-factors", p("v.npy"),
               "--segment-ids", p("v.txt"), "-o", p("x.model")], "2 ids for 50 factor rows")
    ok(r[0], f"id list shorter than the factors ({r[1]})")
    r = fails(["import", "--user-factors", p("u.csv"), "--segment-factors", p("u.npy"), "--segment-ids", p("v.txt"),
               "-o", p("x.model")], "30 ids for 50 factor rows")
    ok(r[0], f"segment ids that do not match the rows ({r[1]})")
    np.save(p("v5.npy"), Vo[:, :5])
    r = fails(["import", "--user-factors", p("u.csv"), "--segment-factors", p("v5.npy"), "--segment-ids", p("v.txt"),
               "-o", p("x.model")], "user factors have 6 columns but segment factors 5")
    ok(r[0], f"different ranks ({r[1]})")
    with open(p("badhist.csv"), "w") as f:
        f.write("7,seg3,1\nnobody,seg3,1\n")
    r = fails(["import", "--user-factors", p("u.csv"), "--segment-factors", p("v.json"), "--history",
               p("badhist.csv"), "-o", p("x.model")], "badhist.csv:2: user 'nobody' is not in the user factors")
    ok(r[0], f"history naming an unknown user ({r[1]})")
    with open(p("notnpy.npy"), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<i8'}")
    r = fails(["import", "--user-factors", p("notnpy.npy"), "--user-ids", p("u.txt"), "--segment-factors",
               p("v.json"), "-o", p("x.model")], "")
    ok(r[1] != "" and "Traceback" not in r[1], f"a broken .npy gets a message ({r[1]})")
    # A forged shape asks for far more than the file holds: refused before
    # anything is allocated for it.
    hdr = b"{'descr': '<f4', 'fortran_order': False, 'shape': (999999999999, 1000), }"
    hdr += b" " * (63 - (10 + len(hdr)) % 64) + b"\n"
    with open(p("huge.npy"), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr + b"\0" * 64)
    r = fails(["import", "--user-factors", p("huge.npy"), "--user-ids", p("u.txt"), "--segment-factors",
               p("v.json"), "-o", p("x.model")], "truncated .npy file: shape (999999999999, 1000) needs")
    ok(r[0], f"a shape larger than the file is refused before allocating ({r[1]})")
done()
