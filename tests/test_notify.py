#!/usr/bin/python3
"""What a service manager sees: systemd's readiness protocol and log rotation.

The test plays systemd's part: it binds a Unix datagram socket, starts the
server with NOTIFY_SOCKET naming it, and reads what arrives. READY=1 must come
once the model serves, not merely when the port answers (the port answers
-LOADING first); RELOADING=1 with MONOTONIC_USEC, then READY=1, around SIGHUP
and MODEL RELOAD (and around a reload that fails); STOPPING=1 at SIGTERM. The
same over an abstract-namespace socket ('@name'). Then logrotate's part:
rename the log file, send SIGUSR1, and the new file gets the new lines while
the renamed one stops growing.
"""
import os
import shutil
import signal
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
from serve import Server, free_port, make_model  # noqa: E402
from tap import done, ok  # noqa: E402


def fields(msg):
    """A notify datagram's NAME=value lines as a dict."""
    return dict(line.split("=", 1) for line in msg.decode().split("\n") if "=" in line)


def recv(sock, timeout):
    """The next datagram as a dict, or None after timeout seconds."""
    sock.settimeout(timeout)
    try:
        return fields(sock.recv(4096))
    except socket.timeout:
        return None


def loading_answer(port):
    """What SEGMENTS gets on the port now: "ok", the error, or None if nothing listens."""
    try:
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        try:
            r.execute_command("SEGMENTS", "u000001")
            return "ok"
        except redis.exceptions.BusyLoadingError as e:  # a ConnectionError to redis-py
            return "LOADING " + str(e)
        except redis.exceptions.ResponseError as e:
            return str(e)
        finally:
            r.close()
    except redis.exceptions.ConnectionError:
        return None


def mono_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


with tempfile.TemporaryDirectory() as d:
    path, _ = make_model(d)
    served = os.path.join(d, "served.model")
    shutil.copy(path, served)
    nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    nsock.bind(os.path.join(d, "notify"))
    port = free_port()
    # The model load is held back 1.5 s: the port answers -LOADING meanwhile.
    srv = Server(served, "--allow-reload-path", d=d, port=port, wait=False,
                 env={"NOTIFY_SOCKET": os.path.join(d, "notify"), "STARLING_TEST_LOAD_DELAY": "1.5"})
    seen_loading = False
    end = time.monotonic() + 10
    while time.monotonic() < end:
        a = loading_answer(port)
        if a and a.startswith("LOADING"):
            seen_loading = True
            break
        time.sleep(0.02)
    ok(seen_loading, "the port answers -LOADING while the model loads")
    early = recv(nsock, 0.1)
    ok(early is None, f"no READY=1 while the port answers -LOADING (got {early})")
    msg = recv(nsock, 20)
    ok(msg is not None and msg.get("READY") == "1" and "serving" in msg.get("STATUS", ""),
       f"READY=1 with a STATUS once the model is loaded: {msg}")
    ok(loading_answer(port) == "ok", "once READY=1 has arrived, SEGMENTS is answered from the model")
    srv.wait_ready()
    r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=10)

    def around_reload(what, trigger, expect_status):
        before = mono_usec()
        trigger()
        m1 = recv(nsock, 10)
        m2 = recv(nsock, 10)
        after = mono_usec()
        ok(m1 is not None and m1.get("RELOADING") == "1" and before <= int(m1.get("MONOTONIC_USEC", -1)) <= after,
           f"{what}: RELOADING=1 with MONOTONIC_USEC in CLOCK_MONOTONIC microseconds: {m1}")
        ok(m2 is not None and m2.get("READY") == "1" and expect_status in m2.get("STATUS", ""),
           f"{what}: then READY=1 ({expect_status}): {m2}")

    around_reload("SIGHUP", lambda: srv.send(signal.SIGHUP), "serving the reloaded model")
    around_reload("MODEL RELOAD", lambda: r.execute_command("MODEL", "RELOAD"), "serving the reloaded model")
    bad = os.path.join(d, "bad.model")
    with open(bad, "wb") as f:
        f.write(b"not a model")

    def bad_reload():
        try:
            r.execute_command("MODEL", "RELOAD", bad)
        except redis.exceptions.ResponseError:
            pass

    around_reload("a failed MODEL RELOAD", bad_reload, "reload failed")
    ok(recv(nsock, 0.2) is None, "nothing else is sent meanwhile")

    # Log rotation: rename, SIGUSR1, and the lines go to the new file.
    rotated = srv.log + ".1"
    os.rename(srv.log, rotated)
    srv.send(signal.SIGUSR1)
    end = time.monotonic() + 10
    while time.monotonic() < end and not os.path.exists(srv.log):
        time.sleep(0.02)
    ok(os.path.exists(srv.log), "SIGUSR1 creates a new log file under the old name")
    time.sleep(0.1)
    old_size = os.path.getsize(rotated)
    srv.send(signal.SIGHUP)
    recv(nsock, 10)
    recv(nsock, 10)
    end = time.monotonic() + 10
    while time.monotonic() < end and "reloaded" not in srv.text():
        time.sleep(0.02)
    ok("SIGUSR1: log file reopened" in srv.text() and "reloaded: now serving" in srv.text(),
       "the new file gets the lines written after the signal")
    ok(os.path.getsize(rotated) == old_size, "the renamed file stops growing")
    r.close()

    code = srv.stop(signal.SIGTERM)
    msg = recv(nsock, 10)
    ok(msg is not None and msg.get("STOPPING") == "1", f"STOPPING=1 at SIGTERM: {msg}")
    ok(code == 0, f"the server exits cleanly (exit code {code})")
    nsock.close()

    # An abstract-namespace socket ('@' + name): READY=1 and STOPPING=1.
    name = f"starling-test-{os.getpid()}-{time.monotonic_ns()}"
    asock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    asock.bind("\0" + name)
    srv = Server(served, d=d, env={"NOTIFY_SOCKET": "@" + name})
    msg = recv(asock, 20)
    ok(msg is not None and msg.get("READY") == "1", f"an abstract socket ('@{name}') gets READY=1: {msg}")
    srv.stop(signal.SIGTERM)
    msg = recv(asock, 10)
    ok(msg is not None and msg.get("STOPPING") == "1", "and STOPPING=1")
    asock.close()

    # No NOTIFY_SOCKET, or a bad one: the server serves all the same.
    srv = Server(served, d=d, env={"NOTIFY_SOCKET": "relative/not-a-socket"})
    ok(loading_answer(srv.port) == "ok", "a NOTIFY_SOCKET that is no socket changes nothing")
    ok(srv.stop() == 0, "and it stops cleanly")
done()
