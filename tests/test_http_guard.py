#!/usr/bin/python3
"""The HTTP port refuses what a browser can be tricked into sending
(src/httpguard.c): DNS rebinding (a Host that does not name this server: 421,
the probes exempt), cross-site writes (a write to /v1 that is not
application/json: 415; an Origin that is neither the server's own nor listed
in --http-allow-origin: 403), with CORS headers for listed origins only and
OPTIONS preflights answered without the bearer token. Raw sockets send the
exact headers a browser would; what was stored is checked over RESP
(python3-redis); the refusals are counted in /metrics.
"""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import redis
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (install python3-redis: scripts/deps.sh test)")
    sys.exit(0)
from serve import Server, make_model  # noqa: E402
from tap import STARLING, done, ok  # noqa: E402


def exchange(port, method, path, headers=(), body=b"", version="1.1"):
    """One request on a fresh connection (Connection: close); returns
    (status, {lower-case header name: value}, body). Bounded in bytes and time."""
    head = f"{method} {path} HTTP/{version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    data = (head + "Connection: close\r\n\r\n").encode() + body
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(data)
        resp = http.client.HTTPResponse(s, method=method)
        resp.begin()
        return resp.status, {k.lower(): v for k, v in reversed(resp.getheaders())}, resp.read(1 << 20)
    finally:
        s.close()


def jerr(body):
    try:
        return json.loads(body).get("error", "")
    except ValueError:
        return ""


def metric(port, code):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(r'^starling_http_responses_total\{code="%d"\} (\d+)$' % code, text, re.M)
    return int(m.group(1)) if m else 0


def history_len(r, user):
    """Segments HISTORY holds for user (0 when none: nothing was stored)."""
    h = r.execute_command("HISTORY", user)
    return len(h[1]) // 2


with tempfile.TemporaryDirectory() as d:
    path, _ = make_model(d)
    conf = os.path.join(d, "serve.conf")
    with open(conf, "w") as f:
        f.write("http-allow-host cfg.example.test\nhttp-allow-origin http://cfg.example.test:8080\n")
    srv = Server(path, "--config", conf, "--http-port", 0, "--journal", os.path.join(d, "j"),
                 "--http-allow-host", "api.example.test", "--http-allow-origin", "https://dash.example.test",
                 "--min-audience", 0, d=d)
    port = srv.http_port
    r = redis.Redis(host="127.0.0.1", port=srv.port, socket_timeout=10)
    seg = "interest:sports:00"
    event = json.dumps({"user": "victim", "segment": seg, "weight": 9}).encode()
    counts = {421: 0, 415: 0, 403: 0, 204: 0}
    base = {c: metric(port, c) for c in counts}

    def expect(code, got, desc):
        if code in counts:
            counts[code] += 1
        return ok(got == code, f"{desc}: {got}")

    # ---- the attack, from a page on another site -------------------------------------
    st, h, b = exchange(port, "POST", "/v1/events", [("Host", f"127.0.0.1:{port}"), ("Origin", "http://evil.example"),
                                                     ("Content-Type", "text/plain")], event)
    expect(403, st, "the reproduction (POST /v1/events, text/plain, Origin http://evil.example) is refused")
    ok("access-control-allow-origin" not in h and "--http-allow-origin" in jerr(b),
       "with no CORS header, and a message naming the option")
    ok(history_len(r, "victim") == 0, "and no event was stored")
    st, h, b = exchange(port, "POST", "/v1/events", [("Host", f"rebind.evil.example:{port}"),
                                                     ("Origin", f"http://rebind.evil.example:{port}"),
                                                     ("Content-Type", "application/json")], event)
    expect(421, st, "the same write through a rebound name (Host and Origin rebind.evil.example)")
    ok("--http-allow-host" in jerr(b) and "rebind.evil.example" in jerr(b) and json.loads(b)["status"] == 421,
       "421 with a JSON error saying what to configure")
    ok(history_len(r, "victim") == 0, "nothing stored")

    # ---- Host ----------------------------------------------------------------------------------
    for p in ("/v1/model", "/", "/app.js"):
        st, _, _ = exchange(port, "GET", p, [("Host", "rebind.evil.example")])
        expect(421, st, f"GET {p} with Host rebind.evil.example")
    for p in ("/healthz", "/readyz", "/metrics"):
        st, _, _ = exchange(port, "GET", p, [("Host", f"rebind.evil.example:{port}")])
        ok(st == 200, f"GET {p} with Host rebind.evil.example: exempt, {st}")
    for host in (f"localhost:{port}", "localhost", f"127.0.0.1:{port}", f"[::1]:{port}", "[::1]",
                 f"explorer.localhost:{port}", "LocalHost.", f"10.1.2.3:{port}", f"api.example.test:{port}",
                 "API.example.test", "cfg.example.test"):
        st, _, _ = exchange(port, "GET", "/v1/model", [("Host", host)])
        ok(st == 200, f"Host {host}: served ({st})")
    st, _, _ = exchange(port, "GET", "/v1/model", version="1.0")
    ok(st == 200, f"HTTP/1.0 with no Host: served ({st})")
    for host in ("[::1", "127.0.0.1:80:80", "::1", "localhost.evil.example", "api.example.test.evil.example",
                 f"evil-localhost:{port}", "127.0.0.1:http"):
        st, _, _ = exchange(port, "GET", "/v1/model", [("Host", host)])
        expect(421, st, f"Host {host!r}")
    st, _, b = exchange(port, "GET", "/v1/model", [("Host", "localhost"), ("Host", "rebind.evil.example")])
    ok(st == 400 and "two Host" in jerr(b), f"two Host headers: 400 ({st})")

    # ---- Content-Type of writes --------------------------------------------------------------------
    good_host = ("Host", f"127.0.0.1:{port}")
    for ctype in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                  "multipart/form-data; boundary=x", "application/jsonp", "text/plain, application/json", None):
        hd = [good_host] + ([("Content-Type", ctype)] if ctype else [])
        st, _, b = exchange(port, "POST", "/v1/events", hd, event)
        expect(415, st, f"POST /v1/events with Content-Type {ctype}")
    ok("application/json" in jerr(b), "415 says which type to send")
    ok(history_len(r, "victim") == 0, "none of them stored an event")
    st, _, _ = exchange(port, "DELETE", "/v1/users/u000001", [good_host, ("Content-Type", "text/plain")], b"x")
    expect(415, st, "DELETE with a text/plain body")
    ok(r.exists("u:u000001") == 1, "the user was not forgotten")
    st, _, _ = exchange(port, "POST", "/v1/events", [good_host, ("Content-Type", "Application/JSON; charset=utf-8")],
                        event)
    ok(st == 200 and history_len(r, "victim") == 1, f"application/json with a charset: stored ({st})")
    st, _, _ = exchange(port, "POST", "/", [good_host, ("Content-Type", "text/plain")], b"x")
    ok(st == 405, f"POST to the page is not a /v1 write: 405 as before ({st})")

    # ---- Origin and CORS -------------------------------------------------------------------------------
    jhd = [good_host, ("Content-Type", "application/json")]
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{port + 1}", f"http://localhost:{port}",
                   "https://dash.example.test.evil.example", "http://" + "a" * 300):
        st, h, _ = exchange(port, "POST", "/v1/events", jhd + [("Origin", origin)],
                            json.dumps({"user": "victim2", "segment": seg}).encode())
        expect(403, st, f"a write from Origin {origin[:40]}")
        ok("access-control-allow-origin" not in h, "  with no Access-Control-Allow-Origin")
    ok(history_len(r, "victim2") == 0, "no foreign origin stored anything")
    st, h, _ = exchange(port, "GET", "/v1/model", [good_host, ("Origin", "http://evil.example")])
    expect(403, st, "a cross-origin read from a foreign origin")
    st, h, _ = exchange(port, "POST", "/v1/events", jhd + [("Origin", f"http://127.0.0.1:{port}")],
                        json.dumps({"user": "victim2", "segment": seg}).encode())
    ok(st == 200 and "access-control-allow-origin" not in h and h.get("vary") == "Origin",
       f"the server's own origin (the page's requests): served, Vary: Origin, no CORS header ({st})")
    for origin in ("https://dash.example.test", "http://cfg.example.test:8080"):
        st, h, b = exchange(port, "POST", "/v1/users/u000001/scores", jhd + [("Origin", origin)],
                            json.dumps({"segments": [seg]}).encode())
        ok(st == 200 and h.get("access-control-allow-origin") == origin and h.get("vary") == "Origin",
           f"a listed origin {origin}: 200 with Access-Control-Allow-Origin and Vary ({st}, {h})")
    st, h, _ = exchange(port, "GET", "/v1/segments/nope/audience", [good_host, ("Origin", "https://dash.example.test")])
    ok(st == 404 and h.get("access-control-allow-origin") == "https://dash.example.test",
       f"errors to a listed origin carry the header too, so its page can read them ({st})")
    st, h, _ = exchange(port, "GET", "/v1/model", [good_host])
    ok(st == 200 and h.get("vary") == "Origin" and "access-control-allow-origin" not in h,
       "no Origin: Vary: Origin, no CORS header")

    # ---- OPTIONS preflights ----------------------------------------------------------------------------
    pre = [good_host, ("Access-Control-Request-Method", "POST"),
           ("Access-Control-Request-Headers", "content-type, authorization")]
    st, h, b = exchange(port, "OPTIONS", "/v1/events", pre + [("Origin", "https://dash.example.test")])
    expect(204, st, "a preflight from a listed origin")
    ok(h.get("access-control-allow-origin") == "https://dash.example.test" and
       "POST" in h.get("access-control-allow-methods", "") and
       "Content-Type" in h.get("access-control-allow-headers", "") and
       "Authorization" in h.get("access-control-allow-headers", "") and
       int(h.get("access-control-max-age", "0")) > 0 and h.get("vary") == "Origin" and
       "content-length" not in h and b == b"", f"  with the CORS headers, no body ({h})")
    st, h, _ = exchange(port, "OPTIONS", "/v1/events", pre + [("Origin", "http://evil.example")])
    expect(403, st, "a preflight from a foreign origin")
    ok(not any(k.startswith("access-control-") for k in h), "  with no CORS header")
    st, h, _ = exchange(port, "OPTIONS", "/v1/events", [good_host])
    expect(204, st, "OPTIONS with no Origin")
    ok("POST" in h.get("allow", "") and "access-control-allow-origin" not in h, "  lists the methods, no CORS header")
    st, _, _ = exchange(port, "OPTIONS", "/v1/events", [("Host", "rebind.evil.example"),
                                                       ("Origin", "http://rebind.evil.example")])
    expect(421, st, "a preflight through a rebound name")

    # ---- the counters and CONFIG GET -----------------------------------------------------------------
    for c in counts:
        got = metric(port, c) - base[c]
        ok(got == counts[c], f"/metrics counts the {c}s: {got} (sent {counts[c]})")
    ok(r.execute_command("CONFIG", "GET", "http-allow-*") ==
       [b"http-allow-host", b"cfg.example.test api.example.test", b"http-allow-origin",
        b"http://cfg.example.test:8080 https://dash.example.test"],
       "CONFIG GET http-allow-*: the config file's entries, then the command line's")
    def expect_continue(host):
        """What the server sends after the head of a POST with Expect:
        100-continue, before any body: b"" when it waits for the body."""
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall((f"POST /v1/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(event)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").encode())
        s.settimeout(0.5)
        try:
            first = s.recv(4096)
        except socket.timeout:
            first = b""
        s.settimeout(5)
        s.sendall(event)
        rest = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        s.close()
        return first, first + rest
    first, whole = expect_continue("rebind.evil.example")
    ok(first == b"" and b" 421 " in whole.split(b"\r\n")[0],
       f"Expect: 100-continue under a rebound name: no 100 Continue, 421 once the body comes ({whole[:40]!r})")
    first, whole = expect_continue(f"127.0.0.1:{port}")
    ok(first.startswith(b"HTTP/1.1 100 Continue") and b"HTTP/1.1 200" in whole,
       "under the server's own name: 100 Continue, then 200")
    srv.stop()

    # ---- a wildcard, a password --------------------------------------------------------------------------
    conf2 = os.path.join(d, "auth.conf")
    with open(conf2, "w") as f:
        f.write('requirepass "s3cret"\nhttp-allow-host *\nhttp-allow-origin *\n')
    os.chmod(conf2, 0o600)
    srv = Server(path, "--config", conf2, "--http-port", 0, d=d)
    port = srv.http_port
    st, h, _ = exchange(port, "OPTIONS", "/v1/lookalike", [("Host", "anything.example"),
                                                           ("Origin", "https://any.example"),
                                                           ("Access-Control-Request-Method", "POST")])
    ok(st == 204 and h.get("access-control-allow-origin") == "https://any.example",
       f"with http-allow-origin *, any origin's preflight: 204 echoing it, no token needed ({st})")
    st, h, _ = exchange(port, "GET", "/v1/model", [("Host", "anything.example"), ("Origin", "https://any.example")])
    ok(st == 401 and h.get("access-control-allow-origin") == "https://any.example",
       f"but the API still needs the token (401, readable by that page) ({st})")
    st, h, _ = exchange(port, "GET", "/v1/model", [("Host", "anything.example"), ("Origin", "https://any.example"),
                                                  ("Authorization", "Bearer s3cret")])
    ok(st == 200 and h.get("access-control-allow-origin") == "https://any.example",
       f"with it, served to any Host and origin ({st})")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events", data=event,
                                 headers={"Authorization": "Bearer s3cret"})  # urllib's default type: form-urlencoded
    try:
        urllib.request.urlopen(req, timeout=5)
        code = 200
    except urllib.error.HTTPError as e:
        code = e.code
    ok(code == 415, f"urllib's default form-urlencoded POST: 415 ({code})")
    srv.stop()

    # ---- settings the checks could never match are refused at start ----------------------------------
    for opt, val in (("--http-allow-origin", "https://dash.example.test/"), ("--http-allow-origin", "dash.example.test"),
                     ("--http-allow-host", "api.example.test:8080"), ("--http-allow-host", "http://api.example.test")):
        p = subprocess.run([STARLING, "serve", path, "--http-port", "0", opt, val], capture_output=True, text=True,
                           timeout=20)
        ok(p.returncode == 2 and opt in p.stderr, f"{opt} {val}: usage error ({p.returncode}: {p.stderr.strip()[:90]})")

done()
