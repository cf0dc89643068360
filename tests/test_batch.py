#!/usr/bin/python3
"""The batch forms: `segments --users FILE|-`, `score --users`, `segments
--all-users` and `audience --all-segments`, each one model load for many users.

--users must print, user after user, exactly what the single-user form
prints (the same scores to the last digit: the same row-by-row kernel),
--exclude-seen, --calibrated and --journal included; an unknown user is
reported with its line and skipped, not fatal. --all-users and
--all-segments rank by sgemm blocks: compared with the Python package's
reader (its own numpy kernels) for every user and segment, within 1e-5 and
up to the order of near ties, and with the single-user form on a sample;
the thread count changes nothing in the output.
"""
import json
import re
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
try:
    import numpy  # noqa: F401
    import redis
    from starling import Model
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (needs python3-numpy, python3-redis, python3-xxhash)")
    sys.exit(0)
from serve import Server, make_model  # noqa: E402
from tap import STARLING, done, ok  # noqa: E402

TOL = 1e-5


def run(*args, stdin=None):
    return subprocess.run([STARLING, *map(str, args)], capture_output=True, text=True, input=stdin, timeout=300)


def single(*args):
    """The single-user form's lines, with the user in front (as --users prints them)."""
    user = args[2]
    r = run(*args)
    return [f"{user}\t{line}" for line in r.stdout.splitlines()] if r.returncode == 0 else None


def ranked_alike(got, want):
    """Two best-first lists of (id, score): scores within TOL at each rank,
    and the same ids except where the scores are that close (near ties)."""
    if len(got) != len(want):
        return False
    for (gi, gs), (wi, ws) in zip(got, want):
        if abs(gs - ws) > TOL * max(1.0, abs(ws)):
            return False
    last = want[-1][1] if want else 0
    sure = lambda lst: {i for i, s in lst if s > last + TOL}  # noqa: E731
    return sure(got) == sure(want)


def grouped(text, key=0):
    """TSV lines A<TAB>B<TAB>score grouped by column key into {A: [(B, score)]}."""
    out = {}
    for line in text.splitlines():
        a, b, s = line.split("\t")
        out.setdefault(a, []).append((b, float(s)))
    return out


with tempfile.TemporaryDirectory() as d:
    # Fitted on a validation split: a prior weight and a calibration, so the
    # blend and --calibrated are exercised too.
    path, ev = make_model(d, validation=None)
    pm = Model(path)
    users = [str(u) for u in pm.user_ids]
    segs = [str(s) for s in pm.segment_ids]
    sample = users[::97][:20]

    # --users FILE: the single form's lines, user after user; unknown users skipped.
    listing = os.path.join(d, "users.txt")
    with open(listing, "w") as f:
        f.write("\n".join(sample[:5] + ["nobody-at-all"] + [""] + sample[5:]) + "\n")
    r = run("segments", path, "--users", listing, "-k", 7, "--threads", 2)
    want = [line for u in sample for line in single("segments", path, u, "-k", 7)]
    ok(r.returncode == 0 and r.stdout.splitlines() == want,
       f"segments --users prints what `segments MODEL USER` prints for each user, to the last digit ({len(want)} lines)")
    ok(f"{listing}:6: unknown user 'nobody-at-all'" in r.stderr and re.search(r"20 users answered in [0-9.]+ s after the model load, 1 unknown", r.stderr),
       f"an unknown user is reported with its line number and skipped: {r.stderr.splitlines()[:1]}")
    r2 = run("segments", path, "--users", "-", "-k", 7, "--threads", 1, stdin=open(listing).read())
    ok(r2.returncode == 0 and r2.stdout == r.stdout and "stdin:6: unknown user" in r2.stderr,
       "--users - reads stdin; one thread or two print the same")
    r = run("segments", path, "--users", listing, "-k", 5, "--exclude-seen", "--calibrated")
    want = [line for u in sample for line in single("segments", path, u, "-k", 5, "--exclude-seen", "--calibrated")]
    ok(r.returncode == 0 and r.stdout.splitlines() == want, "with --exclude-seen and --calibrated too")
    r = run("segments", path, "--users", listing, "-k", 3, "--json")
    js = [json.loads(line) for line in r.stdout.splitlines()]
    one = json.loads(run("segments", path, sample[0], "-k", 3, "--json").stdout)
    ok(len(js) == 20 and js[0] == one and all(j["user"] == u for j, u in zip(js, sample)),
       "--json: one JSON line per user, the single form's object")

    r = run("segments", path, sample[0], "--users", listing)
    r2 = run("segments", path, "--users", listing, "--all-users")
    r3 = run("audience", path, "--all-segments", "--segment", segs[0])
    ok(r.returncode == r2.returncode == r3.returncode == 2 and "MODEL alone" in r.stderr and "not both" in r2.stderr
       and "--all-segments takes one model" in r3.stderr, "mixed forms are usage errors that say why")
    empty = os.path.join(d, "empty.txt")
    open(empty, "w").close()
    r = run("segments", path, "--users", empty)
    ok(r.returncode == 0 and r.stdout == "" and "0 users answered" in r.stderr, "an empty list answers nobody, cleanly")

    # score --users
    asked = [segs[3], segs[0], segs[11]]
    r = run("score", path, "--users", listing, *asked)
    want = [line for u in sample for line in single("score", path, u, *asked)]
    ok(r.returncode == 0 and r.stdout.splitlines() == want, "score --users prints what `score MODEL USER SEG...` does")
    r = run("score", path, "--users", listing, *asked, "--json")
    js = [json.loads(line) for line in r.stdout.splitlines()]
    ok(len(js) == 20 and [s["segment"] for s in js[0]["scores"]] == asked and
       abs(js[0]["scores"][0]["score"] - float(want[0].split("\t")[2])) < 1e-6, "score --users --json")
    r = run("score", path, "--users", listing, "no-such-segment")
    ok(r.returncode == 1 and "unknown segment 'no-such-segment'" in r.stderr, "an unknown segment is refused")
    r = run("segments", path, "--users", os.path.join(d, "missing.txt"))
    ok(r.returncode == 1 and "missing.txt" in r.stderr, f"a missing --users file is named: {r.stderr.strip()}")

    # --all-users: every user's top k by sgemm blocks, against the package.
    r = run("segments", path, "--all-users", "-k", 10, "--threads", 2)
    got = grouped(r.stdout)
    bad = [u for u in users if not ranked_alike(got.get(u, []), [(s, v) for s, v in pm.segments(u, 10)])]
    ok(r.returncode == 0 and len(got) == len(users) and not bad,
       f"--all-users: every user's top 10 as the Python package ranks them ({len(got)} users, differ: {bad[:3]})")
    r1 = run("segments", path, "--all-users", "-k", 10, "--threads", 1)
    ok(r1.stdout == r.stdout, "--all-users prints the same on one thread and two")
    ex = grouped(run("segments", path, "--all-users", "-k", 6, "--exclude-seen").stdout)
    bad = [u for u in sample
           if not ranked_alike(ex[u], [(line.split("\t")[1], float(line.split("\t")[2]))
                                       for line in single("segments", path, u, "-k", 6, "--exclude-seen")])]
    ok(not bad, f"--all-users --exclude-seen matches the single form on {len(sample)} users (differ: {bad})")
    bad = [u for u in users if not ranked_alike(ex[u], [(s, v) for s, v in pm.segments(u, 6, unseen=True)])]
    ok(not bad, f"and the package's unseen=True on every user (differ: {bad[:3]})")

    # --all-segments: every segment's top n users.
    r = run("audience", path, "--all-segments", "-n", 25, "--threads", 2)
    got = grouped(r.stdout)
    bad = [s for s in segs if not ranked_alike(got.get(s, []), [(u, v) for u, v in pm.audience(s, 25)])]
    ok(r.returncode == 0 and len(got) == len(segs) and not bad,
       f"--all-segments: every segment's best 25 users as the package ranks them ({len(got)} segments, differ: "
       f"{bad[:3]})")
    for s in segs[:8]:
        one = run("audience", path, "--segment", s, "-n", 25).stdout
        if not ranked_alike(got[s], [(u, float(v)) for u, v in (line.split("\t") for line in one.splitlines())]):
            bad.append(s)
    ok(not bad, "and as `audience --segment S` ranks them (8 segments)")
    ok(run("audience", path, "--all-segments", "-n", 25, "--threads", 1).stdout == r.stdout,
       "--all-segments prints the same on one thread and two")
    thr = pm.audience(segs[0], 50)[-1][1]  # segs[0] reaches 50 users at thr, not every segment does
    lo = run("audience", path, "--all-segments", "-n", 5, "--min", repr(thr), "--min-audience", 50)
    reach = {s: int(run("audience", path, "--segment", s, "--reach", "--min", repr(thr), "--min-audience", 0).stdout)
             for s in segs[:10]}
    lo_got = grouped(lo.stdout)
    ok(all((s in lo_got) == (n >= 50) for s, n in reach.items()) and "left out" in lo.stderr and
       min(reach.values()) < 50 <= max(reach.values()) and all(v >= thr for lst in lo_got.values() for _, v in lst),
       f"--min and the privacy floor: a segment reaching fewer than --min-audience users is left out ({reach})")
    js = [json.loads(line) for line in run("audience", path, "--all-segments", "-n", 3, "--json").stdout.splitlines()]
    ok(len(js) == len(segs) and js[0]["segment"] == segs[0] and len(js[0]["users"]) == 3, "--all-segments --json")

    # An int8 model: its user rows dequantized as every command reads them.
    q = os.path.join(d, "q.model")
    run("quantize", path, "-o", q)
    qa = grouped(run("audience", q, "--all-segments", "-n", 10).stdout)
    qs = grouped(run("segments", q, "--all-users", "-k", 5).stdout)
    bad = [s for s in segs[:5]
           if not ranked_alike(qa.get(s, []), [(u, float(v)) for u, v in (line.split("\t") for line in
                                               run("audience", q, "--segment", s, "-n", 10).stdout.splitlines())])]
    bad += [u for u in sample
            if not ranked_alike(qs.get(u, []), [(line.split("\t")[1], float(line.split("\t")[2]))
                                                for line in single("segments", q, u, "-k", 5)])]
    ok(len(qa) == len(segs) and len(qs) == len(users) and not bad,
       f"an int8 model: --all-segments and --all-users as the single forms rank (differ: {bad})")

    # --journal: a server forgets one user, changes another, learns a new one.
    journal = os.path.join(d, "events.journal")
    srv = Server(path, "--journal", journal, "--appendfsync", "always", d=d)
    c = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
    gone, changed = sample[1], sample[2]
    c.execute_command("FORGET", gone)
    for s in segs[40:44]:
        c.execute_command("EVENT", changed, s, 20)
        c.execute_command("EVENT", "brand-new-user", s, 10)
    srv_answer = c.execute_command("SEGMENTS", "brand-new-user", "COUNT", 4)
    c.close()
    srv.stop()
    with open(listing, "a") as f:
        f.write("brand-new-user\n")
    r = run("segments", path, "--users", listing, "-k", 4, "--journal", journal)
    want = [line for u in sample + ["brand-new-user"] if u != gone
            for line in single("segments", path, u, "-k", 4, "--journal", journal)]
    ok(r.returncode == 0 and r.stdout.splitlines() == want and f"unknown user '{gone}' (the journal" in r.stderr,
       "--users --journal: the forgotten user is unknown, the changed and new ones answered as the single form does")
    new_lines = [line.split("\t") for line in r.stdout.splitlines() if line.startswith("brand-new-user\t")]
    ok([s for _, s, _ in new_lines] == srv_answer[1][::2], "the user only the journal knows, as the server ranks them")
    allj = grouped(run("segments", path, "--all-users", "-k", 4, "--journal", journal).stdout)
    ok(gone not in allj and "brand-new-user" in allj and
       ranked_alike(allj[changed], [(line.split("\t")[1], float(line.split("\t")[2]))
                                    for line in single("segments", path, changed, "-k", 4, "--journal", journal)]),
       "--all-users --journal leaves the forgotten user out, ranks the changed one anew and adds the new one")
    r = run("audience", path, "--all-segments", "-n", 2000, "--journal", journal)
    aud = grouped(r.stdout)
    one = run("audience", path, "--segment", segs[41], "-n", 2000, "--journal", journal).stdout
    good = all(gone not in [u for u, _ in lst] for lst in aud.values()) and \
        ranked_alike(aud.get(segs[41], []), [(u, float(v)) for u, v in (line.split("\t") for line in one.splitlines())])
    ok(good, "--all-segments --journal: no forgotten user anywhere, and as `audience --segment S --journal` ranks" +
       ("" if good else f" (exit {r.returncode}: {r.stderr.strip()[:2500]})"))
done()
