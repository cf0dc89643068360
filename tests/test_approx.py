#!/usr/bin/python3
"""The approximate index on a real server (serve --approx): AUDIENCE and
LOOKALIKE with APPROX against the exact scan on a trained model: high
recall, every score returned equal to the user's exact score, best first;
a FORGET'd user never returned, an EVENT-created user returned, a user
changed by EVENT never with its old score; the privacy floor as strict as
the exact path's; INFO's Approx section; --approx off and on; syntax."""
import os
import re
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve import Server, make_model  # noqa: E402
from tap import done, ok, skip_all  # noqa: E402

try:
    import redis
except ImportError:
    skip_all("needs python3-redis")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from starling import Client, Model  # noqa: E402

USERS = 6000


def pairs(reply):
    return [(reply[i].decode(), reply[i + 1].decode()) for i in range(0, len(reply), 2)]


def wait_ready(r, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if r.info("approx").get("approx_ready") == 1:
            return True
        time.sleep(0.05)
    return False


def err(f):
    try:
        f()
    except redis.ResponseError as e:
        return str(e)
    return ""


def sorted_best_first(p):
    s = [float(v) for _, v in p]
    return all(s[i] >= s[i + 1] for i in range(len(s) - 1))


with tempfile.TemporaryDirectory() as d:
    model, _ = make_model(d, users=USERS, segments=200, events=150000, seed=5)
    M = Model(model)
    J = os.path.join(d, "j.journal")
    srv = Server(model, "--approx", "request", "--journal", J, "--appendfsync", "always", "--min-audience", 50,
                 "--min-seeds", 1, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port)
    ok(wait_ready(r), "the index is built after the load (INFO approx_ready:1)")
    info = r.info("approx")
    ok(info["approx_mode"] == "request" and info["approx_lists"] > 1 and info["approx_memory"] > 0
       and info["approx_build_seconds"] > 0 and 0 < info["approx_probe_rows"] <= USERS,
       f"INFO approx: {info['approx_lists']} lists, {info['approx_memory']} bytes, "
       f"{info['approx_build_seconds']} s, budget {info['approx_probe_rows']} rows")
    ok(info["approx_recall"] >= 0.9 and info["approx_recall_queries"] > 0,
       f"INFO approx: measured recall@{info['approx_recall_at']} {info['approx_recall']}")
    conf = r.config_get("approx*")
    ok(conf == {"approx": "request", "approx-recall": "0.98"}, f"CONFIG GET approx*: {conf}")
    try:
        r.config_set("approx", "on")
        refused = ""
    except redis.ResponseError as e:
        refused = str(e)
    ok("approx" in refused and "immutable" in refused, f"CONFIG SET approx: refused, named ({refused})")

    # AUDIENCE: recall against the exact scan; every score the exact one.
    segs = [M.segment_ids[i] for i in range(0, 200, 20)]
    recall, exact_scores, ordered = [], True, True
    for seg in segs:
        everyone = dict(pairs(r.execute_command("AUDIENCE", seg, "COUNT", USERS)))
        exact = pairs(r.execute_command("AUDIENCE", seg, "COUNT", 200))
        approx = pairs(r.execute_command("AUDIENCE", seg, "COUNT", 200, "APPROX"))
        recall.append(len({u for u, _ in exact} & {u for u, _ in approx}) / len(exact))
        exact_scores &= len(approx) == 200 and all(everyone[u] == s for u, s in approx)
        ordered &= sorted_best_first(approx)
    ok(min(recall) >= 0.8 and sum(recall) / len(recall) >= 0.9,
       f"AUDIENCE APPROX top 200: mean recall {sum(recall) / len(recall):.3f}, least {min(recall):.3f} (10 segments)")
    ok(exact_scores, "every APPROX score equals the user's exact score")
    ok(ordered, "APPROX answers are best first")
    seg = segs[0]
    ok(r.execute_command("AUDIENCE", seg, "COUNT", 100, "EXACT") == r.execute_command("AUDIENCE", seg, "COUNT", 100),
       "EXACT answers as a request without a word")
    q0 = r.info("approx")["approx_queries"]
    ok(q0 >= 10, f"INFO approx_queries counts the scans the index answered ({q0})")

    # MIN with APPROX, in either place.
    exact = pairs(r.execute_command("AUDIENCE", seg, "COUNT", 300))
    thr = exact[120][1]
    a1 = pairs(r.execute_command("AUDIENCE", seg, "APPROX", "COUNT", 300, "MIN", thr))
    ok(0 < len(a1) <= 121 and all(float(s) >= float(thr) for _, s in a1), f"APPROX with MIN: {len(a1)} users, all at least MIN")
    # The privacy floor: 30 users above MIN is under --min-audience 50 for either path.
    thr = exact[29][1]
    e_err = err(lambda: r.execute_command("AUDIENCE", seg, "COUNT", 10, "MIN", thr))
    a_err = err(lambda: r.execute_command("AUDIENCE", seg, "COUNT", 10, "MIN", thr, "APPROX"))
    ok("privacy floor" in e_err and a_err == e_err, f"below the floor APPROX is refused as the exact scan is ({a_err})")

    # FORGET: the best user is never returned again.
    top = pairs(r.execute_command("AUDIENCE", seg, "COUNT", 200, "APPROX"))
    gone = top[0][0]
    ok(r.execute_command("FORGET", gone) == b"OK", "FORGET the best user")
    after = pairs(r.execute_command("AUDIENCE", seg, "COUNT", USERS - 10, "APPROX"))
    ok(gone not in {u for u, _ in after}, "a forgotten user is never returned by APPROX")

    # An existing user changed by EVENT: its old score never comes back.
    seg2 = segs[1]
    top2 = pairs(r.execute_command("AUDIENCE", seg2, "COUNT", 50, "APPROX"))
    moved = top2[0][0]
    for s in M.segment_ids[150:160]:
        r.execute_command("EVENT", moved, s, 5)
    everyone = dict(pairs(r.execute_command("AUDIENCE", seg2, "COUNT", USERS)))
    a2 = pairs(r.execute_command("AUDIENCE", seg2, "COUNT", USERS - 10, "APPROX"))
    got = dict(a2)
    ok(moved in everyone and got.get(moved, everyone[moved]) == everyone[moved] and everyone[moved] != top2[0][1],
       "a user changed by EVENT is scored from its new vector, never its model row")

    # An EVENT-created user ranked among the exact top is in the APPROX top.
    for i in range(3):
        r.execute_command("EVENT", "approx-new", seg, 50)
    exact = pairs(r.execute_command("AUDIENCE", seg, "COUNT", USERS + 1))
    rank = [u for u, _ in exact].index("approx-new")
    approx = pairs(r.execute_command("AUDIENCE", seg, "COUNT", rank + 1, "APPROX"))
    ok(("approx-new", exact[rank][1]) in approx, f"an EVENT-created user (exact rank {rank}) is returned by APPROX")

    # LOOKALIKE.
    seeds = M.user_ids[300:340]
    everyone = dict(pairs(r.execute_command("LOOKALIKE", "COUNT", USERS, *seeds)))
    exact = pairs(r.execute_command("LOOKALIKE", "COUNT", 200, *seeds))
    approx = pairs(r.execute_command("LOOKALIKE", "APPROX", "COUNT", 200, *seeds))
    rec = len({u for u, _ in exact} & {u for u, _ in approx}) / len(exact)
    ok(rec >= 0.8 and all(everyone[u] == s for u, s in approx) and not set(seeds) & {u for u, _ in approx},
       f"LOOKALIKE APPROX: recall {rec:.3f}, exact scores, no seed returned")
    ok(r.execute_command("LOOKALIKE", "EXACT", "COUNT", 50, *seeds) == r.execute_command("LOOKALIKE", "COUNT", 50, *seeds),
       "LOOKALIKE EXACT is the exact scan")
    ok("syntax error" in err(lambda: r.execute_command("LOOKALIKE", "APPROX", "COUNT", 5)),
       "LOOKALIKE APPROX COUNT 5 (no seed): syntax error")
    ok("syntax error" in err(lambda: r.execute_command("AUDIENCE", seg, "COUNT", 5, "FAST")), "an unknown word: syntax error")
    # The Python client's approx= says APPROX (True) or EXACT (False).
    cl = Client(port=srv.port)
    q1 = r.info("approx")["approx_queries"]
    got = [(u, repr(s)) for u, s in cl.audience(seg, 50, approx=True)]
    cl.audience(seg, 50, approx=False)
    cl.lookalike(seeds, 50, approx=True)
    ok(r.info("approx")["approx_queries"] == q1 + 2 and len(got) == 50, "Client.audience/lookalike(approx=True) use the index")
    srv.stop()

    # --approx off (the default): no index; APPROX is answered by the exact scan.
    srv = Server(model, "--min-audience", 0, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port)
    info = r.info("approx")
    same = r.execute_command("AUDIENCE", seg2, "COUNT", 100, "APPROX") == r.execute_command("AUDIENCE", seg2, "COUNT", 100)
    info = r.info("approx")
    ok(same and info["approx_mode"] == "off" and info["approx_ready"] == 0 and info["approx_fallbacks"] == 1,
       "--approx off: no index, APPROX answered exactly and counted as a fallback")
    srv.stop()

    # --approx on: every AUDIENCE uses the index unless EXACT.
    srv = Server(model, "--approx", "on", "--min-audience", 0, "--http-port", 0, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port)
    ok(wait_ready(r), "--approx on: the index is built")
    r.execute_command("AUDIENCE", seg2, "COUNT", 100, "APPROX")
    r.execute_command("AUDIENCE", seg2, "COUNT", 100, "EXACT")
    r.execute_command("AUDIENCE", seg2, "COUNT", 100)
    info = r.info("approx")
    # This small model's budget is every user: by default the exact scan (faster) answers.
    ok(info["approx_queries"] == 1 and info["approx_fallbacks"] == 1 and info["approx_probe_rows"] * 4 > USERS,
       "--approx on: APPROX uses the index, EXACT does not, and a plain AUDIENCE does not when the budget is over "
       "a quarter of the users")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{srv.http_port}/metrics", timeout=10).read().decode()
    ok("\nstarling_approx_ready 1\n" in metrics and "\nstarling_approx_queries_total 1\n" in metrics
       and "\nstarling_approx_fallbacks_total 1\n" in metrics
       and re.search(r"\nstarling_approx_memory_bytes [1-9]", metrics), "/metrics: the index's gauges and counts")
    ok(r.execute_command("MODEL", "RELOAD") == b"OK" and wait_ready(r), "after MODEL RELOAD the new model's index is built")
    srv.stop()
done()
