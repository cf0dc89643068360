#!/usr/bin/python3
"""A served model survives its file being overwritten in place.

The server reads its model into memory it owns, so what is done to the file
afterwards (`cp new.model served.model`, `cat >`, `rsync --inplace`) cannot
reach the model it serves: with a mapping, a shorter file killed it with
SIGBUS and a longer one was served as garbage. For a float model with a
journal (an online user in the overlay) and for an int8 model, the file is
rewritten in place (r+b, never a rename) three ways: truncated to half,
overwritten by another model with bytes appended, overwritten by random bytes
of the same size. After each: the process is alive, SEGMENTS, SCORE and
AUDIENCE answer exactly as before, and MODEL RELOAD and SIGHUP of the damaged
file are refused (the generation stays, INFO counts the failures). Then a
proper deploy (a temp file in the same directory, renamed over the served
path) and MODEL RELOAD serve the new model. A client sends requests through
all of it: none fails.
"""
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import redis
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (install python3-redis: scripts/deps.sh test)")
    sys.exit(0)
from serve import Server, make_model  # noqa: E402
from tap import done, note, ok, starling  # noqa: E402

USERS = ["u000001", "u000017", "u000333", "u001234", "u001999"]
SEGS = ["interest:sports:00", "keyword:travel:05", "interest:finance:08"]


def model_info(r):
    mi = r.execute_command("MODEL", "INFO")
    return dict(zip(mi[::2], mi[1::2]))


def answers(r, extra_users=()):
    """What the server answers now for a few users and segments."""
    got = []
    for u in [*USERS, *extra_users]:
        got.append(r.execute_command("SEGMENTS", u, "COUNT", 10))
        got.append(r.execute_command("SCORE", u, *SEGS))
    for s in SEGS[:2]:
        got.append(r.execute_command("AUDIENCE", s, "COUNT", 50))
    return got


def refused(r, srv, what):
    """MODEL RELOAD then SIGHUP of the damaged file: both refused, the old model kept."""
    gen = model_info(r)["generation"]
    fails = r.info("model")["model_reload_failures"]
    try:
        r.execute_command("MODEL", "RELOAD")
        err = ""
    except redis.ResponseError as e:
        err = str(e)
    ok("still serving the previous model" in err, f"{what}: MODEL RELOAD is refused ({err[:90]})")
    srv.send(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and r.info("model")["model_reload_failures"] < fails + 2:
        time.sleep(0.02)
    ok(r.info("model")["model_reload_failures"] == fails + 2, f"{what}: SIGHUP's reload is refused too, INFO counts both")
    ok(model_info(r)["generation"] == gen, f"{what}: the generation stays {gen}")


def scenario(d, label, model, other, args):
    served = os.path.join(d, f"served-{label}.model")
    shutil.copy(model, served)
    srv = Server(served, *args, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
    extra = []
    if "--journal" in args:
        ok(r.execute_command("EVENT", "online-1", SEGS[0], 3) == "OK", f"{label}: EVENT creates an online user")
        extra = ["online-1"]
    before = answers(r, extra)

    # A client sends requests through every overwrite and reload below.
    stop, failures, count = threading.Event(), [], [0]

    def load():
        c = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
        t_end = time.monotonic() + 120
        try:
            while not stop.is_set() and count[0] < 300000 and time.monotonic() < t_end:
                u = USERS[count[0] % len(USERS)]
                src, pairs = c.execute_command("SEGMENTS", u, "COUNT", 5)
                if src != "model" or len(pairs) != 10:
                    failures.append((u, src))
                count[0] += 1
        except Exception as e:  # noqa: BLE001
            failures.append(("exception", repr(e)))
        c.close()

    th = threading.Thread(target=load)
    th.start()
    size = os.path.getsize(served)
    other_bytes = open(other, "rb").read()
    cases = [
        ("truncated to half in place", lambda f: f.truncate(size // 2)),
        ("overwritten in place by a longer file (another model, bytes appended)",
         lambda f: (f.seek(0), f.write(other_bytes + os.urandom(4096)))),
        ("overwritten in place by random bytes of the same size",
         lambda f: (f.seek(0), f.write(os.urandom(os.path.getsize(served))))),
    ]
    for what, change in cases:
        with open(served, "r+b") as f:
            change(f)
        time.sleep(0.05)
        ok(srv.proc.poll() is None, f"{label}: {what}: the server is alive")
        ok(answers(r, extra) == before, f"{label}: {what}: SEGMENTS, SCORE, AUDIENCE answer as before")
        refused(r, srv, f"{label}: {what}")
        ok(answers(r, extra) == before, f"{label}: {what}: still the same answers after the refused reloads")

    # The proper deploy: write elsewhere in the same directory, rename over, reload.
    gen = model_info(r)["generation"]
    tmp = os.path.join(d, f".served-{label}.model.tmp")
    with open(tmp, "wb") as f:
        f.write(other_bytes)
    os.rename(tmp, served)
    ok(r.execute_command("MODEL", "RELOAD") == "OK", f"{label}: a model renamed over the served path reloads")
    mi = model_info(r)
    ok(mi["generation"] == gen + 1 and mi["segments"] == 200, f"{label}: the new model is served (generation {gen + 1})")
    ok(answers(r, extra) != before, f"{label}: and its answers are the new model's")
    if extra:
        src, _ = r.execute_command("SEGMENTS", "online-1", "COUNT", 3)
        ok(src != "unknown", f"{label}: the online user carries over to the new model ({src})")
    stop.set()
    th.join(30)
    ok(not failures and count[0] > 0, f"{label}: {count[0]} requests through overwrites and reloads, none failed")
    if failures:
        note(str(failures[:3]))
    ok(srv.stop() == 0, f"{label}: the server stops cleanly")


with tempfile.TemporaryDirectory() as d:
    path, _ = make_model(d)
    other, _ = make_model(d, name="other.model", users=3000, segments=200, events=50000, seed=4)
    scenario(d, "float+journal", path, other, ["--journal", os.path.join(d, "j.aof")])
    q8 = os.path.join(d, "q8.model")
    other_q8 = os.path.join(d, "other-q8.model")
    starling("quantize", path, "-o", q8)
    starling("quantize", other, "-o", other_q8)
    scenario(d, "int8", q8, other_q8, [])
done()
