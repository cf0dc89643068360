#!/usr/bin/python3
"""What a hostile or broken client can do to the server, and the limits.

Each hostile request must get an error reply and a closed connection, and a
PING on a new connection must still answer. Then the limits one by one:
authentication (--requirepass, from a config file), max clients, the idle
timeout, the output limit, the request size and argument count.
"""
import os
import random
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import redis
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (install python3-redis: scripts/deps.sh test)")
    sys.exit(0)
from serve import Server, make_model, read_until_closed  # noqa: E402
from tap import done, ok  # noqa: E402


def ping(srv):
    s = srv.raw()
    s.sendall(b"PING\r\n")
    got = s.recv(100)
    s.close()
    return got == b"+PONG\r\n"


def hostile(srv, payload, fragment, desc):
    s = srv.raw()
    try:
        s.sendall(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
    got = read_until_closed(s)
    s.close()
    good = got.startswith(b"-ERR Protocol error") and fragment.encode() in got and got.endswith(b"\r\n")
    ok(good, f"{desc}: error reply, connection closed")
    if not good:
        print(f"#   got {got[:200]!r}")
    ok(ping(srv), f"{desc}: a new connection still answers PING")


with tempfile.TemporaryDirectory() as d:
    path, ev = make_model(d)
    srv = Server(path, "--max-request", 65536, "--max-args", 1000, d=d)
    hostile(srv, b"*-10\r\n", "invalid multibulk length", "*-10")
    hostile(srv, b"*3000000000\r\n", "too many arguments", "*3000000000")
    hostile(srv, b"*1\r\n$100000000\r\n", "larger than the server's limit", "bulk length past the limit")
    hostile(srv, b"*2\r\n$4\r\nECHO\r\n$70000\r\n" + b"x" * 1000, "larger than the server's limit",
            "bulk just past max-request")
    hostile(srv, b"*1001\r\n", "too many arguments", "one argument past max-args")
    hostile(srv, b"*1\r\n$4\r\nPINGxx\r\n", "not followed by CRLF", "bulk longer than announced")
    hostile(srv, b"*1\r\n:5\r\n", "expected '$'", "an integer where a bulk string belongs")
    hostile(srv, b"x" * 70000, "too big inline request", "70 kB inline line with no end")
    hostile(srv, b"ECHO \"unterminated\r\n", "unbalanced quotes", "unbalanced quotes")
    hostile(srv, b"*1\r\n$-7\r\n", "invalid bulk length", "negative bulk length")
    hostile(srv, b"*" + b"9" * 40, "too big mbulk count string", "endless array header")
    # A pipelined request before the bad one is still answered, in order.
    s = srv.raw()
    s.sendall(b"PING\r\nECHO hi\r\n*-1\r\nPING\r\n")
    got = read_until_closed(s)
    ok(got.startswith(b"+PONG\r\n$2\r\nhi\r\n-ERR Protocol error") and got.count(b"PONG") == 1,
       "replies before a protocol error are sent, nothing after it")
    s.close()
    # Random garbage, many times: the server never dies.
    rng = random.Random(5)
    for i in range(200):
        s = srv.raw()
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        if i % 4 == 0:
            blob = b"*" + blob
        elif i % 4 == 1:
            blob = b"*2\r\n$" + blob
        try:
            s.sendall(blob)
            s.shutdown(socket.SHUT_WR)
            read_until_closed(s)
        except OSError:
            pass
        s.close()
    ok(ping(srv), "200 connections of random bytes, then PING still answers")
    # Half a request, then the client vanishes.
    for chunk in (b"*3\r\n$8\r\nSEGMENTS\r\n$", b"*2\r\n$4\r\nECHO\r\n$5\r\nab"):
        s = srv.raw()
        s.sendall(chunk)
        s.close()
    ok(ping(srv), "clients that vanish mid-request leave the server answering")
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
    args = ["SCORE", "u000001"] + ["seg"] * 997
    ok(len(r.execute_command(*args)[1]) == 997, "999 arguments (under --max-args 1000) are fine")
    ok(r.info("stats")["protocol_errors"] >= 12, "INFO counts protocol errors")
    r.close()
    ok(srv.stop() == 0, "clean exit after all that")

    # Authentication, from a config file.
    conf = os.path.join(d, "starling.conf")
    with open(conf, "w") as f:
        f.write(f"# test config\nmodel {path}\nrequirepass \"s3cret pass\"\nmaxclients 5\ntimeout 1\n")
    srv = Server(None, "--config", conf, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
    try:
        r.execute_command("SEGMENTS", "u000001")
        got = None
    except redis.AuthenticationError as e:
        got = str(e)
    except redis.ResponseError as e:
        got = str(e)
    ok(got is not None and "Authentication required" in got, "NOAUTH before AUTH")
    try:
        r.execute_command("AUTH", "wrong")
        got = None
    except redis.ResponseError as e:
        got = str(e)
    ok(got is not None and "invalid username-password pair" in got, "wrong password: WRONGPASS")
    ok(r.execute_command("AUTH", "s3cret pass") is True, "AUTH with the password")
    ok(r.execute_command("SEGMENTS", "u000001", "COUNT", 1)[0] == "model", "commands work after AUTH")
    r2 = redis.Redis(host="127.0.0.1", port=srv.port, password="s3cret pass", decode_responses=True)
    ok(r2.ping(), "a client configured with the password (AUTH on connect)")
    r3 = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
    hello = r3.execute_command("HELLO", "2", "AUTH", "default", "s3cret pass", "SETNAME", "x")
    ok(hello[hello.index("proto") + 1] == 2 and r3.client_getname() == "x", "HELLO 2 AUTH default ... SETNAME")
    # Max clients (5): r, r2, r3 plus two more; the sixth is refused.
    extra = [srv.raw() for _ in range(2)]
    s6 = srv.raw()
    got = read_until_closed(s6)
    ok(got == b"-ERR max number of clients reached\r\n", "the client past --maxclients is refused with an error")
    s6.close()
    for s in extra:
        s.close()
    for _ in range(100):  # until the server has seen them go
        if r2.info("clients")["connected_clients"] <= 3:
            break
        time.sleep(0.02)
    # Idle timeout (1 s): an idle connection is closed within a few seconds.
    idle = srv.raw(timeout=6)
    t0 = time.monotonic()
    got = read_until_closed(idle)
    waited = time.monotonic() - t0
    ok(got == b"" and 0.9 < waited < 5, f"an idle client is closed after --timeout ({waited:.1f} s)")
    if got:
        print(f"#   got {got[:100]!r}")
    idle.close()
    for c in (r, r2, r3):
        c.close()
    ok(srv.stop() == 0, "clean exit")

    # Output limit: a reply bigger than it drops the client, others go on.
    srv = Server(path, "--output-limit", 4096, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
    try:
        r.execute_command("SEGMENTS", "u000001", "COUNT", 300)
        got = "answered"
    except redis.ConnectionError:
        got = "dropped"
    ok(got == "dropped", "a reply over --output-limit drops the client")
    r2 = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
    ok(len(r2.execute_command("SEGMENTS", "u000001", "COUNT", 5)[1]) == 10, "other clients are unaffected")
    # A client that pipelines without reading: the server stops reading it
    # instead of buffering without bound, and stays responsive.
    s = srv.raw()
    s.setblocking(False)
    sent = 0
    req = b"SEGMENTS u000001 COUNT 20\r\n" * 1000
    t0 = time.monotonic()
    outcome = "unbounded"
    while time.monotonic() - t0 < 3 and sent < 50_000_000:
        try:
            sent += s.send(req)
        except BlockingIOError:
            outcome = "throttled"
            break
        except ConnectionResetError:
            outcome = "dropped"
            break
    ok(outcome == "throttled", f"a client that never reads is throttled, not dropped ({sent} bytes accepted)")
    ok(r2.ping(), "and the server still answers others")
    ok(r2.info("stats")["output_limit_disconnections"] >= 1, "INFO counts output-limit disconnections")
    s.close()
    r2.close()
    ok(srv.stop() == 0, "clean exit")
done()
