#!/usr/bin/python3
"""Crashes, torn writes and full disks, against a real server.

The kill loop: client threads stream EVENT and FORGET (pipelined or not) to a
server with appendfsync always while compactions run, and the server is
killed with SIGKILL at a random moment; after each restart every
acknowledged write must be there (every user's history equals the one the
acknowledged writes make, plus a prefix of the batch that was in flight) and
no forgotten user may appear anywhere. STARLING_KILL_ITERATIONS (default 6)
and STARLING_KILL_SECONDS (the longest stream between kills, default 0.6)
size it; `make soak-journal` runs it long.

Then: a torn last record is dropped and reported; damage in the middle stops
the server with the offset to cut at; a full disk, injected at many points
(DEBUG IO-FAIL-AFTER) and real (a small tmpfs in a private mount namespace,
when the kernel allows one), answers the writes with an error and loses
nothing acknowledged.
"""
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
try:
    import numpy as np
    import redis
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (install python3-redis and python3-numpy: scripts/deps.sh test)")
    sys.exit(0)
from serve import Server, make_model  # noqa: E402
from starling import Journal, Model  # noqa: E402
from tap import STARLING, done, note, ok  # noqa: E402

f32 = np.float32
ITERATIONS = int(os.environ.get("STARLING_KILL_ITERATIONS", "6"))
SECONDS = float(os.environ.get("STARLING_KILL_SECONDS", "0.6"))
THREADS = 4


def connect(srv):
    return redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)


def actual(r, user):
    src, pairs = r.execute_command("HISTORY", user)
    if src == "none":
        return None
    return {pairs[i]: f32(float(pairs[i + 1])) for i in range(0, len(pairs), 2)}


def apply(state, op, known):
    """The state a write makes: None (unknown or forgotten) or {segment: r}."""
    if op[0] == "forget":
        return None
    _, seg, w = op
    if seg not in known:
        return state  # journaled for training; this model cannot use it
    h = dict(state or {})
    h[seg] = f32(float(h.get(seg, 0)) + w)
    return h


def command(user, op):
    return ("FORGET", user) if op[0] == "forget" else ("EVENT", user, op[1], op[2])


def kill_loop(d, path, M):
    rng = random.Random(os.getpid())
    known = set(M.segment_ids)
    segs = M.segment_ids[:24].tolist() + ["a-segment-the-model-lacks"]
    users, owner, state = [], {}, {}
    for t in range(THREADS):
        for i in range(6):
            new, old = f"k{t}-{i}", M.user_ids[100 + t * 6 + i]
            lo, hi = int(M.hist_ptr[100 + t * 6 + i]), int(M.hist_ptr[100 + t * 6 + i + 1])
            state[new] = None
            state[old] = {M.segment_ids[int(s)]: f32(v) for s, v in zip(M.hist_idx[lo:hi], M.hist_val[lo:hi])}
            for u in (new, old):
                users.append(u)
                owner[u] = t
    journal = os.path.join(d, "kill.journal")
    flags = ["--journal", journal, "--appendfsync", "always", "--min-audience", 0, "--min-seeds", 0]
    total_acked = total_inflight = lost = ghosts = 0
    problems = []
    for it in range(ITERATIONS):
        srv = Server(path, *flags, d=d)
        stop = threading.Event()
        acked = [[] for _ in range(THREADS)]
        inflight = [[] for _ in range(THREADS)]
        errors = []

        def stream(t):
            c = connect(srv)
            mine = [u for u in users if owner[u] == t]
            local = random.Random(rng.random())
            try:
                while not stop.is_set():
                    batch = []
                    for _ in range(local.choice((1, 1, 2, 4))):
                        u = local.choice(mine)
                        op = ("forget",) if local.random() < 0.15 else ("event", local.choice(segs), local.choice((1, 2, 3)))
                        batch.append((u, op))
                    inflight[t] = batch
                    if len(batch) == 1:
                        replies = [c.execute_command(*command(*batch[0]))]
                    else:
                        p = c.pipeline(transaction=False)
                        for u, op in batch:
                            p.execute_command(*command(u, op))
                        replies = p.execute()
                    if any(x != "OK" for x in replies):
                        errors.append(replies)
                    acked[t].extend(batch)
                    inflight[t] = []
            except (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError):
                pass

        def compactor():
            c = connect(srv)
            try:
                while not stop.is_set():
                    time.sleep(rng.uniform(0.05, 0.3))
                    try:
                        c.execute_command("JOURNAL", "COMPACT")
                    except redis.ResponseError:
                        pass  # one is already running
            except (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError):
                pass

        threads = [threading.Thread(target=stream, args=(t,)) for t in range(THREADS)]
        threads.append(threading.Thread(target=compactor))
        for th in threads:
            th.start()
        time.sleep(rng.uniform(0.1, SECONDS))
        srv.send(signal.SIGKILL)
        srv.proc.wait(10)
        stop.set()
        for th in threads:
            th.join(30)
        if errors:
            problems.append(f"iteration {it}: error replies {errors[:2]}")
        srv = Server(path, *flags, d=d)
        r = connect(srv)
        now = {u: actual(r, u) for u in users}
        # Per thread: the acknowledged writes, then some prefix of the batch
        # that was in flight, must give exactly what the server holds.
        for t in range(THREADS):
            mine = [u for u in users if owner[u] == t]
            base = dict(state)
            for u, op in acked[t]:
                base[u] = apply(base[u], op, known)
            batch = inflight[t]
            for p in range(len(batch), -1, -1):
                cand = dict(base)
                for u, op in batch[:p]:
                    cand[u] = apply(cand[u], op, known)
                if all(cand[u] == now[u] for u in mine):
                    for u in mine:
                        state[u] = cand[u]
                    break
            else:
                lost += 1
                bad = [u for u in mine if base[u] != now[u]][:2]
                problems.append(f"iteration {it}, thread {t}: {bad} hold {[now[u] for u in bad]}, "
                                f"acknowledged {[base[u] for u in bad]}")
                for u in mine:
                    state[u] = now[u]
            total_acked += len(acked[t])
            total_inflight += len(batch)
        # No forgotten user anywhere: AUDIENCE over everyone, an s: range,
        # EXISTS, look-alikes.
        everyone = len(M.user_ids) + len(users)
        aud = set(r.execute_command("AUDIENCE", M.segment_ids[0], "COUNT", everyone)[::2])
        zr = set(r.execute_command("ZRANGE", f"s:{M.segment_ids[1]}", 0, -1))
        la = set(r.execute_command("LOOKALIKE", "COUNT", everyone, *M.user_ids[1000:1010])[::2])
        for u in users:
            present = state[u] is not None
            shown = [u in aud, u in zr, u in la, r.execute_command("EXISTS", f"u:{u}") == 1]
            if any(shown) != present or all(shown) != present:
                ghosts += 1
                problems.append(f"iteration {it}: {u} ({'live' if present else 'forgotten'}) shown as {shown}")
        srv.stop()
    forgotten = sum(1 for u in users if state[u] is None)
    note(f"{ITERATIONS} SIGKILLs: {total_acked} acknowledged writes, {total_inflight} in flight at the kills, "
         f"{forgotten} of {len(users)} users forgotten at the end")
    for p in problems[:5]:
        note(p)
    ok(lost == 0, f"after each of {ITERATIONS} SIGKILLs every acknowledged write is there")
    ok(ghosts == 0, "and no forgotten user appears in AUDIENCE, an s: range, LOOKALIKE or EXISTS")
    ok(total_acked > 50 * ITERATIONS, f"the stream was not idle ({total_acked} writes acknowledged)")
    return journal, flags, users, state


def torn_tail(d, path, journal, flags, users, state):
    j = Journal(journal)
    good = os.path.getsize(journal)
    ok(j.torn_bytes == 0, "after the kills the journal ends on a whole record")
    data = open(journal, "rb").read()
    whole = 8 + struct.unpack_from("<I", data, 68)[0]
    cut = whole - 5
    with open(journal, "ab") as f:
        f.write(data[64:64 + cut])  # a record cut short, as a crash leaves it
    srv = Server(path, *flags, d=d)
    r = connect(srv)
    log = srv.text()
    ok("torn" in log and f"dropped {cut} bytes" in log, "a torn last record is reported with its size in the log")
    ok(r.info("persistence")["journal_start_torn_bytes"] == cut, "and in INFO persistence")
    ok(os.path.getsize(journal) == good, "and cut off the file")
    ok(all(actual(r, u) == state[u] for u in users), "everything before it is intact")
    srv.stop()
    # Damage in the middle is not a torn tail: the server refuses to start.
    data = bytearray(open(journal, "rb").read())
    data[64 + 20] ^= 0x40
    bad = os.path.join(d, "damaged.journal")
    open(bad, "wb").write(bytes(data))
    p = subprocess.run([STARLING, "serve", path, "--port", "0", "--journal", bad], capture_output=True, text=True,
                       timeout=30)
    ok(p.returncode == 1 and "damaged" in p.stderr and "truncate -s 64" in p.stderr,
       "damage in the middle: the server does not start, and says where to cut")
    note(p.stderr.strip().splitlines()[-1][:160])


def full_disk_injected(d, path, M):
    journal = os.path.join(d, "full.journal")
    flags = ["--journal", journal, "--appendfsync", "always", "--enable-debug-command"]
    srv = Server(path, *flags, d=d)
    r = connect(srv)
    seg = M.segment_ids[2]
    total, refused, failed_ok = 0, 0, True
    for budget in list(range(0, 90, 3)) + [1000]:
        r.execute_command("DEBUG", "IO-FAIL-AFTER", budget)
        for i in range(3):
            try:
                ok_reply = r.execute_command("EVENT", "disk-user", seg, 1)
                total += ok_reply == "OK"
            except redis.ResponseError as e:
                refused += 1
                failed_ok &= "Errors writing to the journal" in str(e) and "No space left" in str(e)
        r.execute_command("DEBUG", "IO-FAIL-AFTER", -1)
    try:
        r.execute_command("DEBUG", "IO-FAIL-AFTER", 0)
        r.execute_command("FORGET", "disk-user")
        forget_refused = False
    except redis.ResponseError as e:
        forget_refused = "No space left" in str(e)
    r.execute_command("DEBUG", "IO-FAIL-AFTER", -1)
    h = actual(r, "disk-user")
    ok(refused > 0 and failed_ok, f"a full disk: {refused} writes answered MISCONF ... No space left on device")
    ok(forget_refused and h is not None, "a FORGET that cannot be journaled is refused, and the user stays")
    ok(h == {seg: f32(total)}, f"the {total} acknowledged events are applied, the refused ones are not")
    ok(r.info("persistence")["journal_append_failures"] == refused + 1, "INFO counts the failed appends")
    srv.stop(signal.SIGKILL)
    srv = Server(path, *flags, d=d)
    r = connect(srv)
    ok(actual(r, "disk-user") == {seg: f32(total)} and r.info("persistence")["journal_start_torn_bytes"] == 0,
       "after a SIGKILL exactly the acknowledged events are there, and no partial record was left behind")
    srv.stop()
    plain = Server(path, d=d)
    try:
        connect(plain).execute_command("DEBUG", "IO-FAIL-AFTER", 0)
        refused_debug = False
    except redis.ResponseError as e:
        refused_debug = "not allowed" in str(e)
    ok(refused_debug, "DEBUG is refused unless --enable-debug-command")
    plain.stop()


def tmpfs_inner(mnt, path):
    """Runs inside a private mount namespace: a 64 KiB tmpfs fills up."""
    out = {}
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt], check=True)
    filler = os.path.join(mnt, "filler")
    with open(filler, "wb") as f:
        f.write(b"x" * 40000)
    journal = os.path.join(mnt, "events.journal")
    d = tempfile.mkdtemp()
    flags = ["--journal", journal, "--appendfsync", "always"]
    srv = Server(path, *flags, d=d)
    r = connect(srv)
    acked, error = 0, ""
    for i in range(2000):
        try:
            r.execute_command("EVENT", "tmpfs-user", "x" * 100 + "-seg", 1)  # a segment the model lacks: long records
            acked += 1
        except redis.ResponseError as e:
            error = str(e)
            break
    out["acked"], out["error"] = acked, error
    out["reads_ok"] = r.execute_command("PING") is True
    os.unlink(filler)
    out["after_room"] = r.execute_command("EVENT", "tmpfs-user", "again-seg", 1) == "OK"
    srv.stop(signal.SIGKILL)
    out["records"] = len(Journal(journal).records)
    out["torn"] = Journal(journal).torn_bytes
    srv = Server(path, *flags, d=d)
    out["restart_records"] = connect(srv).info("persistence")["journal_start_records"]
    srv.stop()
    subprocess.run(["umount", mnt])
    print(json.dumps(out))


def full_disk_tmpfs(d, path):
    mnt = os.path.join(d, "tmpfs")
    os.mkdir(mnt)
    try:
        p = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, os.path.abspath(__file__),
                            "--tmpfs", mnt, path], capture_output=True, text=True, timeout=120)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        note(f"no tmpfs test: {e}")
        return
    if p.returncode != 0 or not p.stdout.strip():
        note(f"no tmpfs test (no private mount namespace here?): {p.stderr.strip()[-200:]}")
        return
    out = json.loads(p.stdout.strip().splitlines()[-1])
    ok(out["acked"] > 100 and "No space left on device" in out["error"],
       f"a real full disk (64 KiB tmpfs): {out['acked']} events acknowledged, then MISCONF ... No space left")
    ok(out["reads_ok"] and out["after_room"], "the server keeps serving, and writes work again once there is room")
    ok(out["records"] == out["acked"] + 1 and out["torn"] == 0 and out["restart_records"] == out["records"],
       "after a SIGKILL the journal holds exactly the acknowledged records, whole")


if len(sys.argv) == 4 and sys.argv[1] == "--tmpfs":
    tmpfs_inner(sys.argv[2], sys.argv[3])
    sys.exit(0)

with tempfile.TemporaryDirectory() as d:
    path, _ = make_model(d)
    M = Model(path)
    journal, flags, users, state = kill_loop(d, path, M)
    torn_tail(d, path, journal, flags, users, state)
    full_disk_injected(d, path, M)
    full_disk_tmpfs(d, path)
done()
