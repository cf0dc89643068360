#!/usr/bin/python3
"""Pipelined SEGMENTS: the server scores a run of SEGMENTS requests read in
one go together (st_score_topk_segments_many). Their replies must be
exactly those of the same requests sent one at a time: the same segments,
the same score strings, in request order, with every other command in the
pipeline (EVENT, FORGET, SCORE, PING, errors) seeing and seen as before.

Three servers on the same model, each with its own empty journal: one
answers the requests one per write (the reference), one gets them all in
one write, and one gets them in one write too but reads the replies slowly
through a small receive buffer with a small --output-limit, so that runs
stop half-way for replies piling up and are taken up again later. Replies
are compared byte for byte. Users: model
users, unknown users, users made online by EVENT, users forgotten by FORGET,
with COUNT (some past what a run answers), MIN, ONLY, EXCLUDE, UNSEEN,
CALIBRATED, the same user several times in a run, syntax errors and
arity errors inside runs. Then inline requests mixed with RESP arrays in
one write, and RESP3 (HELLO 3).
"""
import os
import random
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
try:
    import redis
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (install python3-redis: scripts/deps.sh test)")
    sys.exit(0)
from serve import Server, make_model  # noqa: E402
from tap import starling  # noqa: E402
from starling import Model  # noqa: E402
from tap import done, ok  # noqa: E402


def segments_request(rng, users, segs):
    """A random SEGMENTS request (its arguments)."""
    args = ["SEGMENTS" if rng.random() < 0.8 else "segments", rng.choice(users)]
    opts = []
    if rng.random() < 0.7:
        opts.append(["COUNT", rng.choice([1, 3, 10, 10, 10, 25, 64, 128, 129, 200])])
    if rng.random() < 0.15:
        opts.append(["MIN", rng.choice(["0.1", "0.3", "-1", "0.9"])])
    if rng.random() < 0.1:
        opts.append(["ONLY", *rng.sample(segs, rng.randint(1, 8)), "no-such-segment"])
    if rng.random() < 0.25:
        opts.append(["EXCLUDE", *rng.sample(segs, rng.randint(1, 12))])
    if rng.random() < 0.25:
        opts.append(["UNSEEN"])
    if rng.random() < 0.15:
        opts.append(["CALIBRATED"])
    rng.shuffle(opts)
    for o in opts:
        args += o
    if rng.random() < 0.01:
        args += ["COLOUR", "red"]  # a syntax error inside a run
    return args


def workload(rng, M, n):
    """n requests: mostly SEGMENTS in runs of various lengths, with EVENT,
    FORGET, SCORE, PING and an arity error between them."""
    segs = list(M.segment_ids)
    model_users = list(M.user_ids)
    users = rng.sample(model_users, 60) + [f"new-{i}" for i in range(10)] + ["nobody", "nobody-else"]
    reqs = []
    while len(reqs) < n:
        for _ in range(rng.choice([1, 2, 5, 16, 16, 31, 33, 70])):
            reqs.append(segments_request(rng, users, segs))
        x = rng.random()
        if x < 0.35:
            reqs.append(["EVENT", rng.choice(users), rng.choice(segs), rng.choice([1, 2, 5])])
        elif x < 0.45:
            reqs.append(["FORGET", rng.choice(users[:60])])
        elif x < 0.6:
            reqs.append(["SCORE", rng.choice(users), *rng.sample(segs, 3)])
        elif x < 0.65:
            reqs.append(["SEGMENTS"])  # wrong number of arguments
        elif x < 0.7:
            reqs.append(["PING"])
    return reqs


MARKER = b"$3\r\nend\r\n"  # the reply to ECHO end, in RESP2 and RESP3


def exchange(s, payload, timeout=10):
    """Sends payload and ECHO end in one write on socket s; returns the bytes
    received before the ECHO's reply (bounded in time and size)."""
    s.sendall(payload + resp_array(["ECHO", "end"]))
    got = b""
    deadline = time.monotonic() + timeout
    while not got.endswith(MARKER) and time.monotonic() < deadline and len(got) < 1 << 24:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got[:-len(MARKER)] if got.endswith(MARKER) else None


def one_per_write(srv, parts):
    """The replies to parts (encoded requests), each sent in a write of its
    own on one connection and answered before the next is sent."""
    c = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    out = [exchange(c, p) for p in parts]
    c.close()
    return out


def all_at_once(srv, parts, rcvbuf=None, slow=False):
    """The replies to parts sent back to back from a thread while this one
    reads: with a small receive buffer and slow reads, replies pile up in
    the server and it has to stop runs half-way."""
    c = socket.socket()
    if rcvbuf:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.settimeout(60)
    c.connect(("127.0.0.1", srv.port))
    payload = b"".join(parts) + resp_array(["ECHO", "end"])
    sender = threading.Thread(target=c.sendall, args=(payload,), daemon=True)
    sender.start()
    got = b""
    deadline = time.monotonic() + 120
    while not got.endswith(MARKER) and time.monotonic() < deadline:
        chunk = c.recv(4096 if slow else 1 << 16)
        if not chunk:
            break
        got += chunk
        if slow:
            time.sleep(0.0005)
    sender.join(10)
    c.close()
    return got[:-len(MARKER)] if got.endswith(MARKER) else got


def first_difference(want, got):
    """Where the concatenated replies want (one per request) and got first
    differ: (request index, its expected reply, what came), or None."""
    at = 0
    for i, w in enumerate(want):
        if got[at:at + len(w)] != w:
            return i, w, got[at:at + len(w) + 40]
        at += len(w)
    return None if at == len(got) else (len(want), b"", got[at:at + 80])


def alone_and_together(srv_alone, srv_together, hello, parts):
    """The replies to parts (encoded requests) sent one per write on one
    connection, and all in one write on another; hello first on each."""
    a = socket.create_connection(("127.0.0.1", srv_alone.port), timeout=10)
    t = socket.create_connection(("127.0.0.1", srv_together.port), timeout=10)
    if hello:
        exchange(a, hello)
        exchange(t, hello)
    one = b"".join(exchange(a, p) or b"?" for p in parts)
    together = exchange(t, b"".join(parts))
    a.close()
    t.close()
    return one, together


def resp_array(args):
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        b = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(b), b)
    return out


with tempfile.TemporaryDirectory() as d:
    # Rank 64 (the eight-row kernel), a prior blend and a calibration (validation on).
    model, _ = make_model(d, users=2000, segments=400, events=40000, seed=5, factors=64, validation=None)
    M = Model(model)
    ok(M.prior_weight > 0 and M.calibrated_flag, f"the model blends a prior (w = {M.prior_weight:.3f}) and is calibrated")
    flags = ["--appendfsync", "no", "--min-audience", 0, "--min-seeds", 0]
    servers = []
    try:
        for name, extra in (("ref", []), ("pip", []), ("small", ["--output-limit", 65536])):
            servers.append(Server(model, "--journal", os.path.join(d, f"{name}.journal"), *extra, *flags, d=d))
        ref, pip, small = servers
        rr, rp = (redis.Redis(host="127.0.0.1", port=s.port, decode_responses=True, socket_timeout=30) for s in (ref, pip))

        rng = random.Random(11)
        reqs = workload(rng, M, 4000)
        parts = [resp_array(a) for a in reqs]
        nseg = sum(1 for a in reqs if a[0].upper() == "SEGMENTS")
        t0 = time.monotonic()
        want = one_per_write(ref, parts)
        ok(all(w is not None for w in want), f"{len(reqs)} requests ({nseg} SEGMENTS) answered one per write")
        want = [w or b"" for w in want]
        diff = first_difference(want, all_at_once(pip, parts))
        ok(diff is None, "the same requests in one write: every reply the same bytes, in order"
           + ("" if diff is None else f" (first difference at {diff[0]}: {reqs[diff[0]]}: {diff[2]!r} vs {diff[1]!r})"))
        diff = first_difference(want, all_at_once(small, parts, rcvbuf=4096, slow=True))
        ok(diff is None, "and read slowly through a small receive buffer, with --output-limit 65536 (runs stop half-way "
           "for replies piling up and are taken up again)"
           + ("" if diff is None else f" (first difference at {diff[0]}: {reqs[diff[0]]}: {diff[2]!r} vs {diff[1]!r})"))
        every = b"".join(want)
        ok(all(x in every for x in (b"+model\r\n", b"+online\r\n", b"+prior\r\n", b"-ERR syntax error", b"-ERR wrong number")),
           "the replies cover model, online and unknown users, syntax and arity errors")
        print(f"# compared in {time.monotonic() - t0:.1f} s")

        # Runs of the same user and of many users at COUNT 10 (the benchmark's shape), 16 deep.
        users = rng.sample(list(M.user_ids), 40)
        reqs2 = [["SEGMENTS", rng.choice(users), "COUNT", 10] for _ in range(16 * 40)]
        reqs2 += [["SEGMENTS", users[0], "COUNT", 10]] * 64
        parts2 = [resp_array(a) for a in reqs2]
        want2 = one_per_write(ref, parts2)
        together = b"".join(all_at_once(pip, parts2[i:i + 16]) for i in range(0, len(parts2), 16))
        ok(None not in want2 and together == b"".join(want2),
           "SEGMENTS COUNT 10 of 40 users in writes of 16, and one user 64 times: the same bytes as one per write")

        # EVENT then SEGMENTS of the same user in one pipeline: the run after the
        # EVENT sees it, the run before does not.
        u = users[1]
        s0 = M.segment_ids[3]
        before = rr.execute_command("SEGMENTS", u, "COUNT", 5)
        p = rp.pipeline(transaction=False)
        p.execute_command("SEGMENTS", u, "COUNT", 5)
        p.execute_command("EVENT", u, s0, 50)
        p.execute_command("SEGMENTS", u, "COUNT", 5)
        p.execute_command("FORGET", u)
        p.execute_command("SEGMENTS", u, "COUNT", 5)
        a, ev, b, fg, c = p.execute()
        ok(a == before and ev == "OK" and b[0] == "online" and b != a and fg == "OK" and c[0] == "prior",
           "EVENT and FORGET between SEGMENTS of the same user in one pipeline: each SEGMENTS sees exactly the writes "
           "before it")

        # Inline requests and RESP arrays in one write, compared byte for byte.
        us = rng.sample(list(M.user_ids), 6)
        parts = []
        for j, x in enumerate(us):
            req = ["SEGMENTS", x, "COUNT", 7, *(["UNSEEN"] if j % 2 else [])]
            parts.append(resp_array(req) if j % 3 else (" ".join(map(str, req)) + "\r\n").encode())
        one, together = alone_and_together(ref, pip, None, parts)
        ok(together is not None and together == one,
           "inline and RESP requests in one write: the same bytes as sent one per write")

        # RESP3: scores as doubles, the same through a run.
        parts = [resp_array(["SEGMENTS", x, "COUNT", 4]) for x in us * 3]
        one, together = alone_and_together(ref, pip, resp_array(["HELLO", 3]), parts)
        ok(together is not None and b"\r\n," in together and together == one,
           "after HELLO 3 (scores as RESP3 doubles) a run replies the same bytes as one request per write")

        rs = redis.Redis(host="127.0.0.1", port=small.port, socket_timeout=10)
        ok(rp.ping() and rs.ping(), "both servers still answer")

        # An int8 model: each user's row is dequantized into the same scratch,
        # so a run must take each one before looking up the next.
        q8 = os.path.join(d, "q8.model")
        starling("quantize", model, "-o", q8)
        for name in ("q8ref", "q8pip"):
            servers.append(Server(q8, "--journal", os.path.join(d, f"{name}.journal"), *flags, d=d))
        q8ref, q8pip = servers[-2:]
        want3 = one_per_write(q8ref, parts2)
        together = b"".join(all_at_once(q8pip, parts2[i:i + 16]) for i in range(0, len(parts2), 16))
        ok(None not in want3 and together == b"".join(want3) and want3 != want2,
           "an int8 model: SEGMENTS of 40 users in writes of 16, the same bytes as one per write")
    finally:
        for srv in servers:
            srv.stop()
done()
