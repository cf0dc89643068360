"""Start and stop a real `starling serve` for the integration tests.

A server listens on an ephemeral loopback port (port 0; the port is read
back from its log), is stopped by its pid, and every wait is bounded.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

from tap import STARLING, skip_all, starling


def make_model(d, name="m.model", users=2000, segments=300, events=40000, seed=3, factors=16, validation=0):
    """Trains a small synthetic model in directory d; returns (model, events csv).
    validation 0 (the default here): the plain factors, no prior weight or
    calibration, for tests that compare with U V^T in numpy."""
    ev = os.path.join(d, f"ev{seed}.csv")
    model = os.path.join(d, name)
    if not os.path.exists(ev):
        starling("synth", "-o", ev, "--users", users, "--segments", segments, "--events", events, "--seed", seed)
    starling("train", ev, "-o", model, "--factors", factors, "--iterations", 5, "--seed", seed, "-q",
             *([] if validation is None else ["--validation", validation]))
    return model, ev


class Server:
    def __init__(self, model, *args, d, port=0, wait=True, env=None, wrap=()):
        """wrap: a command the server runs under (it must exec it), e.g.
        ("ip", "netns", "exec", NAME)."""
        self.log = os.path.join(d, f"serve-{time.monotonic_ns()}.log")
        cmd = [*wrap, STARLING, "serve", *([model] if model else []), "--port", str(port), "--threads", "2",
               "--logfile", self.log, *map(str, args)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log + ".err", "w"), env={**os.environ, **(env or {})})
        self.pid = self.proc.pid
        self.port = None
        self.http_port = None
        self.want_http = "--http-port" in map(str, args)
        if wait:
            self.wait_ready()

    def text(self):
        try:
            return open(self.log).read()
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            h = re.search(r"ready to accept HTTP connections on http://[^ ]*:(\d+)/", text)
            m = re.search(r"ready to accept connections on tcp [^ ]*:(\d+)", text)
            if h:
                self.http_port = int(h.group(1))
            if m:
                self.port = int(m.group(1))
            # The HTTP line comes after the others: wait for it when asked for.
            if self.want_http:
                if h:
                    return
            elif m or "ready to accept connections on unix" in text:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"server did not start: {self.text()} {open(self.log + '.err').read()}")

    def send(self, sig):
        os.kill(self.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Stops the server by its pid; returns its exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def raw(self, timeout=5):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.settimeout(timeout)
        return s


def rss_kib(pid):
    """The resident set of process pid, in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def read_until_closed(s, limit=1 << 20):
    """Everything the server sends until it closes the connection (bounded)."""
    out = b""
    while len(out) < limit:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        out += chunk
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, deadline=10.0):
    """True once something accepts connections on 127.0.0.1:port (bounded)."""
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def nutcracker_config(out, ports):
    """The nutcracker.yml `starling shard` wrote in out, with the proxy on a
    free loopback port and shard i on ports[i]: written to out/run.yml.
    Returns (its path, the proxy's port)."""
    yml = open(os.path.join(out, "nutcracker.yml")).read()
    proxy_port = free_port()
    yml = re.sub(r"listen: 127.0.0.1:\d+", f"listen: 127.0.0.1:{proxy_port}", yml)
    for i, pt in enumerate(ports):
        yml = re.sub(rf"127.0.0.1:\d+:1 shard{i}\n", f"127.0.0.1:{pt}:1 shard{i}\n", yml)
    path = os.path.join(out, "run.yml")
    with open(path, "w") as f:
        f.write(yml)
    return path, proxy_port


def need(*programs):
    """redis-py, after checking that it and the programs are installed; skips
    the whole test (with the reason) when any is missing."""
    try:
        import redis
    except ImportError:
        redis = None
    missing = [p for p in programs if not shutil.which(p)]
    if redis is None or missing:
        skip_all(f"needs python3-redis and {', '.join(programs)} (Debian packages)")
    return redis


class Helpers:
    """Helper processes a test starts (redis-servers, nutcracker): each
    stopped by its pid, and whatever is left killed by kill_all()."""

    def __init__(self):
        self.procs = []

    def start(self, args, **kw):
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def stop(self, p):
        p.terminate()
        p.wait(timeout=10)
        self.procs.remove(p)

    def kill_all(self):
        for p in self.procs:
            p.kill()
            p.wait(timeout=10)
        self.procs = []
