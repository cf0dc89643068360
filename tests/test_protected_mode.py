#!/usr/bin/python3
"""Protected mode, tested across a real network boundary.

The test makes two network namespaces joined by a veth pair (10.231.0.1 in
the server's, 10.231.0.2 in the client's), starts `starling serve` inside the
first bound to every address, and talks to it with redis-cli and urllib from
the second (a non-loopback peer) and from the server's own loopback:

- no password: the remote RESP client gets `-DENIED` naming both ways out and
  nothing it sent runs; remote HTTP gets /healthz and 403 for the API;
  loopback clients are served in full; INFO counts the refusals;
- with a password, or with --protected-mode no, the remote client is served.

Namespaces need root and iproute2: otherwise the test skips with the reason.
Everything it made is removed in a finally.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve import Server, make_model  # noqa: E402
from tap import done, note, ok, skip_all  # noqa: E402

PY = "/usr/bin/python3"
SERVER_IP, CLIENT_IP = "10.231.0.1", "10.231.0.2"


def sh(*cmd, check=True, timeout=20):
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {r.returncode}: {r.stderr.strip()}")
    return r


class Netns:
    """Two namespaces and a veth pair between them; removed by close()."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.srv, self.cli = f"stpm-s-{tag}", f"stpm-c-{tag}"
        self.made = []
        try:
            self._make(tag)
        except BaseException:
            self.close()  # whatever was made before the failure
            raise

    def _make(self, tag):
        for ns in (self.srv, self.cli):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
        a, b = f"vs{tag}", f"vc{tag}"
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", self.srv)
        sh("ip", "link", "set", b, "netns", self.cli)
        for ns, dev, ip in ((self.srv, a, SERVER_IP), (self.cli, b, CLIENT_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def run(self, ns, *cmd, timeout=20):
        return sh("ip", "netns", "exec", ns, *cmd, check=False, timeout=timeout)

    def close(self):
        for ns in self.made:  # deleting a namespace deletes the veth end inside it, and its peer
            sh("ip", "netns", "del", ns, check=False)


def redis_cli(net, ns, host, port, *args, password=None):
    auth = ["--no-auth-warning", "-a", password] if password else []
    r = net.run(ns, "redis-cli", "-h", host, "-p", port, *auth, *args)
    return (r.stdout + r.stderr).strip()


def http_get(net, ns, host, port, path, token=None):
    """The status of GET path from inside ns (urllib in Debian's python3)."""
    code = ("import sys, urllib.request, urllib.error\n"
            "req = urllib.request.Request(sys.argv[1])\n"
            "if len(sys.argv) > 2: req.add_header('Authorization', 'Bearer ' + sys.argv[2])\n"
            "try:\n    print(urllib.request.urlopen(req, timeout=5).status)\n"
            "except urllib.error.HTTPError as e:\n    print(e.code)\n"
            "except OSError as e:\n    print('error', e)\n")
    r = net.run(ns, PY, "-c", code, f"http://{host}:{port}{path}", *([token] if token else []))
    return r.stdout.strip()


def check_protected(net, model, d):
    srv = Server(model, "--bind", "0.0.0.0", "--http-port", 0, "--http-bind", "0.0.0.0", d=d,
                 wrap=("ip", "netns", "exec", net.srv))
    try:
        note(f"server in {net.srv} on 0.0.0.0:{srv.port}, HTTP {srv.http_port}")
        ok("protected mode" in srv.text(), "the log says protected mode is on and how to turn it off")
        before = redis_cli(net, net.srv, "127.0.0.1", srv.port, "HISTORY", "u000001")
        got = redis_cli(net, net.cli, SERVER_IP, srv.port, "FORGET", "u000001")
        ok(got.startswith("DENIED") or "DENIED" in got, f"a client on another host is refused ({got[:60]!r})")
        ok("--protected-mode no" in got and "password" in got, "the refusal says how to set a password or turn it off")
        after = redis_cli(net, net.srv, "127.0.0.1", srv.port, "HISTORY", "u000001")
        ok(before == after and before != "", "what the refused client sent (FORGET) did not run")
        ok(redis_cli(net, net.srv, "127.0.0.1", srv.port, "PING") == "PONG", "a loopback client is served")
        seg = redis_cli(net, net.srv, "127.0.0.1", srv.port, "SEGMENTS", "u000001", "COUNT", "3")
        ok(len(seg.splitlines()) >= 3, "and gets its answers (SEGMENTS)")
        ok(http_get(net, net.cli, SERVER_IP, srv.http_port, "/healthz") == "200",
           "remote HTTP: /healthz still answers (load balancers probe it)")
        ok(http_get(net, net.cli, SERVER_IP, srv.http_port, "/v1/users/u000001/segments") == "403",
           "remote HTTP: the API is refused with 403")
        ok(http_get(net, net.srv, "127.0.0.1", srv.http_port, "/v1/users/u000001/segments") == "200",
           "loopback HTTP: the API is served")
        info = redis_cli(net, net.srv, "127.0.0.1", srv.port, "INFO", "stats")
        refused = [ln for ln in info.splitlines() if ln.startswith("protected_mode_refusals:")]
        ok(refused == ["protected_mode_refusals:2"], f"INFO counts the two refusals, not the probe ({refused})")
    finally:
        srv.stop()


def check_open(net, model, d, args, password, what):
    srv = Server(model, "--bind", "0.0.0.0", *args, d=d, wrap=("ip", "netns", "exec", net.srv))
    try:
        ok(redis_cli(net, net.cli, SERVER_IP, srv.port, "PING", password=password) == "PONG",
           f"{what}: a client on another host is served")
        got = redis_cli(net, net.cli, SERVER_IP, srv.port, "SEGMENTS", "u000001", "COUNT", "3", password=password)
        ok(len(got.splitlines()) >= 3 and "DENIED" not in got, f"{what}: and gets its answers")
    finally:
        srv.stop()


def main():
    if os.geteuid() != 0:
        skip_all("network namespaces need root")
    if not shutil.which("ip") or not shutil.which("redis-cli"):
        skip_all("needs iproute2 (ip) and redis-tools (redis-cli)")
    net = None
    try:
        try:
            net = Netns()
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            skip_all(f"cannot make network namespaces here: {e}")
        with tempfile.TemporaryDirectory() as d:
            model, _ = make_model(d)
            check_protected(net, model, d)
            check_open(net, model, d, ["--requirepass", "s3cret"], "s3cret", "with a password")
            check_open(net, model, d, ["--protected-mode", "no"], None, "with --protected-mode no")
    finally:
        if net:
            net.close()
    done()


if __name__ == "__main__":
    main()
