#!/usr/bin/python3
"""The server's once-a-second trim of freed memory, on the path that runs it:
connections opened on every event loop and closed, then more than a second
idle, so each loop reaches its trim in the same second. The server must still
answer and exit cleanly afterwards; INFO memory says whether the trim ran
(glibc's allocator: it must, or RSS creeps under connection churn) or was
skipped (a sanitizer's allocator: it must be, or it walks glibc's unused arenas
and crashes). Several fresh servers, since the crash was a race on the first
trim of a process.
"""
import os
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve import Server, make_model  # noqa: E402
from tap import done, ok  # noqa: E402

SANITIZED = os.environ.get("STARLING_SANITIZED") == "1"
ROUNDS = 8
LOOPS = 4


def command(port, *args, timeout=5):
    """One RESP command on a fresh connection; returns the raw reply bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            a = str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        s.sendall(b"".join(parts))
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.startswith(b"+") and data.endswith(b"\r\n"):
                break
            if data.startswith(b"$"):
                head, _, rest = data.partition(b"\r\n")
                if len(rest) >= int(head[1:]) + 2:
                    break
        return data


def info_memory(port):
    text = command(port, "INFO", "memory").decode(errors="replace")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("$"))


with tempfile.TemporaryDirectory() as d:
    model, _ = make_model(d, users=500, segments=60, events=8000, factors=8)
    for rnd in range(ROUNDS):
        srv = Server(model, "--threads", LOOPS, d=d)
        try:
            # Connections on every loop, each used once, then all closed together.
            conns = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(8 * LOOPS)]
            for c in conns:
                c.sendall(b"PING\r\n")
            for c in conns:
                c.recv(64)
            for c in conns:
                c.close()
            time.sleep(1.6)  # past the next once-a-second sweep of every loop
            try:
                alive = command(srv.port, "PING") == b"+PONG\r\n"
                mem = info_memory(srv.port) if alive else {}
            except OSError as e:  # the server died: refused or reset
                alive, mem = False, {}
                print(f"# round {rnd + 1}: {e}; the server's log ends: {srv.text()[-300:]!r}")
        finally:
            code = srv.stop(signal.SIGTERM)
        ok(alive, f"round {rnd + 1}: the server answers PING after its loops trimmed (or skipped trimming)")
        ok(code == 0, f"round {rnd + 1}: then exits cleanly on SIGTERM (exit {code})")
        trims = int(mem.get("allocator_trims", "-1"))
        if SANITIZED:
            ok(mem.get("mem_allocator") == "other" and trims == 0,
               f"round {rnd + 1}: sanitized build: the allocator is not glibc's and no trim ran "
               f"(mem_allocator {mem.get('mem_allocator')}, allocator_trims {trims})")
        else:
            ok(mem.get("mem_allocator") == "libc" and trims >= 1,
               f"round {rnd + 1}: plain build: glibc's allocator, freed pages trimmed after the connections closed "
               f"(allocator_trims {trims})")
done()
