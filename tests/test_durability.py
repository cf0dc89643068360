#!/usr/bin/python3
"""Under appendfsync always, nobody sees a write before it is durable, and a
write whose fdatasync failed is never seen at all.

- With fsyncs made slow (DEBUG FSYNC-DELAY), a reader on another connection
  that asks for a user while that user's EVENT waits for its fsync gets its
  reply only after the fsync: the write is not visible before it is durable.
- With fsyncs failing (DEBUG FSYNC-FAIL), the writer's connection is closed,
  the write is cut from the journal and the served model is rebuilt without
  it: no reader sees it, later writes get MISCONF, INFO and /metrics say so,
  and a restart on the same journal does not bring it back.
Loopback only, ephemeral ports, every wait bounded; servers stopped by pid.
"""
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import redis
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (install python3-redis: scripts/deps.sh test)")
    sys.exit(0)
from serve import Server, make_model  # noqa: E402
from tap import done, note, ok  # noqa: E402

SEG = "interest:sports:00"


def resp_cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def recv_line(s, deadline):
    """One simple reply line, or b"" when the server closed the connection."""
    got = b""
    while not got.endswith(b"\r\n") and time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        got += chunk
    return got


def visibility(model, d):
    srv = Server(model, "--journal", os.path.join(d, "vis.journal"), "--appendfsync", "always",
                 "--enable-debug-command", "--threads", 2, d=d)
    admin = redis.Redis(host="127.0.0.1", port=srv.port, socket_timeout=10)
    admin.execute_command("EVENT", "warm", SEG, 1)
    admin.execute_command("DEBUG", "FSYNC-DELAY", 600)
    writer = srv.raw(timeout=10)
    # The readers connect while the writer's loop sits in its fsync, so the
    # other loop accepts them: they are served by a loop the write did not stall.
    readers = [None] * 4
    seen = [None] * len(readers)
    t0 = time.monotonic()

    def read(i):
        readers[i] = redis.Redis(host="127.0.0.1", port=srv.port, socket_timeout=10)
        h = readers[i].execute_command("HISTORY", "fresh-user")
        seen[i] = (h, time.monotonic() - t0)

    writer.sendall(resp_cmd("EVENT", "fresh-user", SEG, 5))
    time.sleep(0.15)
    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(readers))]
    for t in threads:
        t.start()
    wrote = recv_line(writer, t0 + 8)
    tw = time.monotonic() - t0
    for t in threads:
        t.join(10)
    admin.execute_command("DEBUG", "FSYNC-DELAY", 0)
    ok(all(x is not None for x in seen), "every reader answered")
    seen = [x for x in seen if x is not None]
    note("writer acknowledged after %.3f s; readers answered after %s s" %
         (tw, ", ".join(f"{t:.3f}" for _, t in seen)))
    ok(wrote.startswith((b":", b"+", b",")), f"the EVENT is acknowledged ({wrote[:30]!r})")
    showing = [t for h, t in seen if SEG.encode() in h[1]]
    ok(len(showing) == 4, f"every reader's HISTORY shows the event ({len(showing)} of 4)")
    earliest = min(t for _, t in seen)
    ok(earliest >= 0.5, f"and no reader got it before the writer's fsync (600 ms) was over (earliest {earliest:.3f} s)")
    writer.close()
    for c in readers + [admin]:
        if c:
            c.close()
    srv.stop()


def failed_fsync(model, d):
    journal = os.path.join(d, "fail.journal")
    srv = Server(model, "--journal", journal, "--appendfsync", "always", "--enable-debug-command",
                 "--http-port", 0, d=d)
    admin = redis.Redis(host="127.0.0.1", port=srv.port, socket_timeout=10)
    admin.execute_command("EVENT", "kept-user", SEG, 3)
    admin.execute_command("DEBUG", "FSYNC-FAIL", 1)
    writer = srv.raw(timeout=10)
    writer.sendall(resp_cmd("EVENT", "lost-user", SEG, 5))
    got = recv_line(writer, time.monotonic() + 5)
    writer.close()
    ok(got == b"", f"the writer whose fsync failed is closed without a reply ({got[:40]!r})")
    admin.close()
    # Readers during the rebuild are closed; once it is served they answer.
    hist = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            r = redis.Redis(host="127.0.0.1", port=srv.port, socket_timeout=5)
            hist = r.execute_command("HISTORY", "lost-user")
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.1)
    ok(hist is not None and hist[0] == b"none", f"the lost write is never served ({hist})")
    kept = r.execute_command("HISTORY", "kept-user")
    ok(SEG.encode() in kept[1], "the durable write before it is still served")
    try:
        r.execute_command("EVENT", "later-user", SEG, 1)
        later = "applied"
    except redis.ResponseError as e:
        later = str(e)
    ok(later.startswith("MISCONF"), f"later writes get MISCONF ({later[:60]})")
    p = r.info("persistence")
    ok(p["journal_status"] == "broken" and p["aof_last_write_status"] == "err" and
       p["journal_rolled_back_writes"] == 1 and p["journal_fsync_failures"] >= 1,
       f"INFO persistence says so ({p['journal_status']}, aof_last_write_status {p['aof_last_write_status']}, "
       f"{p['journal_rolled_back_writes']} rolled back)")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{srv.http_port}/metrics", timeout=5).read().decode()
    ok("starling_journal_writable 0" in metrics and "starling_journal_rolled_back_writes_total 1" in metrics,
       "/metrics: starling_journal_writable 0, one write rolled back")
    ok("rebuilt without them" in srv.text(), "the log says what happened")
    r.execute_command("DEBUG", "FSYNC-FAIL", 0)
    r.close()
    srv.stop()
    srv = Server(model, "--journal", journal, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, socket_timeout=10)
    ok(r.execute_command("HISTORY", "lost-user")[0] == b"none" and
       SEG.encode() in r.execute_command("HISTORY", "kept-user")[1],
       "after a restart on the same journal: the lost write stays lost, the durable one is there")
    r.close()
    srv.stop()


def main():
    with tempfile.TemporaryDirectory() as d:
        model, _ = make_model(d)
        visibility(model, d)
        failed_fsync(model, d)
    done()


main()
