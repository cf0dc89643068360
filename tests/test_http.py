#!/usr/bin/python3
"""The HTTP side of `starling serve --http-port`: every /v1 endpoint against
the same command over the Redis protocol (python3-redis), unknown ids, bad
JSON, oversized bodies and argument lists, methods and paths, bearer tokens,
the request-rate and maxclients limits (429), malformed HTTP (each status and
the connection closed after it), keep-alive, pipelining and Expect:
100-continue, the page's files with their caching headers, /healthz and
/readyz, and /metrics read by the Prometheus text-format parser
(python3-prometheus-client), with HTTP requests counted by INFO too.
"""
import http.client
import json
import os
import re
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import redis
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (install python3-redis and python3-prometheus-client: scripts/deps.sh test)")
    sys.exit(0)
from serve import Server, make_model  # noqa: E402
from tap import done, note, ok, starling  # noqa: E402


class Client:
    """One keep-alive HTTP connection to 127.0.0.1:port."""

    def __init__(self, port, token=None):
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def req(self, method, path, body=None, headers=None, raw_body=None):
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        try:
            self.conn.request(method, path, body=data, headers=h)
            r = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.conn.request(method, path, body=data, headers=h)
            r = self.conn.getresponse()
        raw = r.read()
        try:
            j = json.loads(raw)
        except ValueError:
            j = None
        return r.status, j, r, raw


def raw_exchange(port, data, limit=1 << 20):
    """Sends bytes on a fresh connection; returns everything until the server closes (bounded)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    out = b""
    while len(out) < limit:
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def status_of(resp):
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.1 ") else None


def pairs(flat):
    return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]


with tempfile.TemporaryDirectory() as d:
    path, ev = make_model(d)
    # A journal, so that POST /v1/events and DELETE /v1/users work; no privacy
    # floors, so that small audiences can be compared with the commands.
    srv = Server(path, "--http-port", 0, "--max-request", 65536, "--max-args", 300, "--journal",
                 os.path.join(d, "http.journal"), "--min-audience", 0, "--min-seeds", 0, d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
    c = Client(srv.http_port)
    users = [u for u in r.execute_command("AUDIENCE", "interest:sports:00", "COUNT", 5)[::2]]
    user, seg = users[0], "interest:sports:00"
    segs = [s for s, _ in pairs(r.execute_command("SEGMENTS", user, "COUNT", 5)[1])]

    # ---- every endpoint, against the same command over RESP -----------------------------
    st, j, resp, _ = c.req("GET", f"/v1/users/{user}/segments?k=5")
    want = r.execute_command("SEGMENTS", user, "COUNT", 5)
    ok(st == 200 and resp.getheader("Content-Type") == "application/json" and j["source"] == "model" and
       j["user"] == user and [(s["segment"], s["score"]) for s in j["segments"]] == pairs(want[1]),
       "GET /v1/users/{id}/segments?k= is SEGMENTS id COUNT k, score for score")
    st, j, _, _ = c.req("GET", f"/v1/users/{user}/segments?k=3&min=0.2&unseen=true")
    want = r.execute_command("SEGMENTS", user, "COUNT", 3, "MIN", 0.2, "UNSEEN")
    ok(st == 200 and [(s["segment"], s["score"]) for s in j["segments"]] == pairs(want[1]),
       "min and unseen become MIN and UNSEEN")
    st, j, _, _ = c.req("GET", "/v1/users/" + "".join("%%%02X" % ord(ch) for ch in user[:4]) + user[4:] +
                        "/segments?k=2")
    ok(st == 200 and j["user"] == user, "a percent-encoded id in the path is decoded")
    st, j, _, _ = c.req("GET", "/v1/users/nobody-at-all/segments?k=4")
    want = r.execute_command("SEGMENTS", "nobody-at-all", "COUNT", 4)
    ok(st == 200 and j["source"] == "prior" and [(s["segment"], s["score"]) for s in j["segments"]] == pairs(want[1]),
       "an unknown user gets the prior's answer, flagged, as over RESP")

    st, j, _, _ = c.req("POST", f"/v1/users/{user}/scores", {"segments": segs[:3] + ["no-such-segment"]})
    want = r.execute_command("SCORE", user, *segs[:3], "no-such-segment")
    ok(st == 200 and [s["segment"] for s in j["scores"]] == segs[:3] + ["no-such-segment"] and
       [s["score"] for s in j["scores"]][:3] == [float(x) for x in want[1][:3]] and j["scores"][3]["score"] is None,
       "POST /v1/users/{id}/scores is SCORE, null for an unknown segment")

    st, j, _, _ = c.req("POST", "/v1/foldin", {"engagement": {segs[0]: 3, segs[1]: 1.5, "no-such": 2}, "k": 4})
    want = r.execute_command("FOLDIN", "COUNT", 4, segs[0], 3, segs[1], 1.5, "no-such", 2)
    ok(st == 200 and j["source"] == "foldin" and [(s["segment"], s["score"]) for s in j["segments"]] == pairs(want[1]),
       "POST /v1/foldin is FOLDIN")

    st, j, _, _ = c.req("GET", f"/v1/segments/{seg}/audience?n=7&min=0.1")
    want = r.execute_command("AUDIENCE", seg, "COUNT", 7, "MIN", 0.1)
    ok(st == 200 and j["segment"] == seg and j["count"] == 7 and
       [(u["user"], u["score"]) for u in j["users"]] == pairs(want), "GET /v1/segments/{id}/audience is AUDIENCE")
    st, j, _, _ = c.req("GET", f"/v1/segments/{seg}/audience")
    ok(st == 200 and j["count"] == 100, "audience: n defaults to 100")

    st, j, _, _ = c.req("GET", f"/v1/segments/{seg}/reach?min=0.5")
    ok(st == 200 and j == {"segment": seg, "min": 0.5, "reach": r.execute_command("REACH", seg, "MIN", 0.5)},
       "GET /v1/segments/{id}/reach is REACH")
    st, j, _, _ = c.req("GET", f"/v1/segments/{seg}/reach?curve=-1,0.25,0.5,1e9")
    want = r.execute_command("REACH", seg, "CURVE", -1, 0.25, 0.5, 1e9)
    ok(st == 200 and j == {"segment": seg, "curve": [{"min": t, "reach": n} for t, n in zip([-1, 0.25, 0.5, 1e9], want)]}
       and j["curve"][2]["reach"] == r.execute_command("REACH", seg, "MIN", 0.5),
       "GET /v1/segments/{id}/reach?curve= is REACH CURVE: each threshold beside its count")
    for q, what in [("min=0.5&curve=0.5", "both min and curve"), ("curve=0.5,,1", "an empty threshold"),
                    ("curve=", "an empty curve"), ("curve=0.5,abc", "a threshold that is not a number")]:
        st, j, _, _ = c.req("GET", f"/v1/segments/{seg}/reach?{q}")
        ok(st == 400 and j["status"] == 400 and j["error"], f"reach with {what}: 400 ({j.get('error')})")

    seeds = users[:3]
    st, j, _, _ = c.req("POST", "/v1/lookalike", {"seeds": seeds + ["nobody"], "n": 6})
    want = r.execute_command("LOOKALIKE", "COUNT", 6, *seeds, "nobody")
    ok(st == 200 and j["count"] == 6 and j["seeds"] == 4 and
       [(u["user"], u["score"]) for u in j["users"]] == pairs(want), "POST /v1/lookalike is LOOKALIKE")

    st, j, _, _ = c.req("GET", "/v1/model")
    info = r.execute_command("MODEL", "INFO")
    info = dict(zip(info[::2], info[1::2]))
    ok(st == 200 and j["users"] == 2000 and j["segments"] == 300 and j["factors"] == 16 and
       j["fingerprint"] == info["fingerprint"] and j["solver"] == info["solver"] == "cg" and
       j["lambda"] == float(info["lambda"]) and j["meta"]["inputs"] == info["meta.inputs"] and
       j["evaluation"] == {}, "GET /v1/model is MODEL INFO, with hyper-parameters and META")

    st, j, _, _ = c.req("GET", "/v1/stats")
    ok(st == 200 and j["commands"]["segments"]["calls"] >= 4 and "p99" in j["commands"]["segments"] and
       j["clients"]["connected_clients"] >= 2, "GET /v1/stats is INFO all, with percentiles per command")

    ok(r.execute_command("CONFIG", "GET", "http-*") ==
       ["http-port", str(srv.http_port), "http-bind", "127.0.0.1", "http-rate", "0", "http-burst", "0",
        "http-maxclients", "1000", "http-allow-host", "", "http-allow-origin", ""],
       "CONFIG GET http-*: the bound HTTP port and the HTTP settings")

    # EVENT and FORGET.
    st, j, _, _ = c.req("POST", "/v1/events", {"user": "u-new", "segment": seg, "weight": 2, "kind": "click"})
    ok(st == 200 and j["ok"] is True, "POST /v1/events is EVENT")
    st, j, _, _ = c.req("GET", "/v1/users/u-new/segments?k=3")
    got = r.execute_command("SEGMENTS", "u-new", "COUNT", 3)
    ok(st == 200 and got[0] == "online" and [(x["segment"], x["score"]) for x in j["segments"]] == pairs(got[1]),
       "the user the event made is served at once, the same over HTTP as over RESP")
    st, j, _, _ = c.req("DELETE", "/v1/users/u-new")
    ok(st == 200 and j["ok"] is True, "DELETE /v1/users/{id} is FORGET")
    st, j, _, _ = c.req("GET", f"/v1/segments/{seg}/audience?n=3000")
    ok(st == 200 and "u-new" not in [x["user"] for x in j["users"]] and
       r.execute_command("SEGMENTS", "u-new", "COUNT", 3)[0] == "prior", "and is forgotten on both sides")
    st, j, _, _ = c.req("POST", "/v1/events", {"user": "u-new", "segment": seg, "weight": "x"})
    ok(st == 400 and "weight" in j["error"], "POST /v1/events with a bad weight: 400 naming it")

    # ---- the privacy floors: 403, refused by policy ----------------------------------------------
    fl = Server(path, "--http-port", 0, d=d)  # the default floors: 100 users, 100 seeds
    fc = Client(fl.http_port)
    st_a, j_a, _, _ = fc.req("GET", f"/v1/segments/{seg}/audience?n=5&min=1e9")
    st_r, j_r, _, _ = fc.req("GET", f"/v1/segments/{seg}/reach?min=1e9")
    st_l, j_l, _, _ = fc.req("POST", "/v1/lookalike", {"seeds": users[:3], "n": 200})
    st_ok, j_ok, _, _ = fc.req("GET", f"/v1/segments/{seg}/audience?n=5")
    ok(st_a == st_r == st_l == 403 and all("privacy floor" in j["error"] for j in (j_a, j_r, j_l)) and
       st_ok == 200 and j_ok["count"] == 5,
       "privacy floors: an audience or reach of no user and 3 seeds are 403 naming the floor; "
       "the best 5 of an audience over the floor are served")
    st_c, j_c, _, _ = fc.req("GET", f"/v1/segments/{seg}/reach?curve=-1e9,1e9")
    ok(st_c == 200 and j_c["curve"][1]["reach"] is None and (j_c["curve"][0]["reach"] or 0) >= 100,
       f"a reach curve under the floor: the withheld count is null, the rest served ({j_c})")
    fl.stop()

    # ---- unknown ids, bad requests --------------------------------------------------------------
    st, j, _, _ = c.req("GET", "/v1/segments/no-such-segment/audience?n=3")
    ok(st == 404 and j["error"] == "unknown segment 'no-such-segment'" and j["status"] == 404,
       "an unknown segment is a 404 with the command's message")
    st, j, _, _ = c.req("GET", "/v1/segments/no-such-segment/reach?min=0")
    ok(st == 404, "reach of an unknown segment: 404")
    st, j, _, _ = c.req("POST", "/v1/lookalike", {"seeds": ["nobody", "nobody-else"], "n": 5})
    ok(st == 404 and "none of the 2 seed users" in j["error"], "a seed list of unknown users: 404")
    for body, what in [(b'{"seeds": ["a",', "truncated JSON"), (b"not json", "not JSON"), (b"[1,2]", "not an object"),
                       (b'{"seeds": "u1"}', "seeds not a list"), (b'{"seeds": [1, 2]}', "ids not strings"),
                       (b'{"seeds": ["u1"], "n": -3}', "a negative n"), (b'{"seeds": ["u1"], "zz": 1}', "an unknown field"),
                       (b'{"seeds": ["u1"], "seeds": ["u2"]}', "a duplicate key"), (b"", "no body")]:
        st, j, _, _ = c.req("POST", "/v1/lookalike", raw_body=body)
        ok(st == 400 and isinstance(j, dict) and j["status"] == 400 and j["error"], f"bad JSON body ({what}): 400")
    st, j, _, _ = c.req("POST", "/v1/foldin", {"engagement": {segs[0]: "three"}})
    ok(st == 400 and "must be a number" in j["error"], "foldin: a weight that is not a number: 400")
    st, j, _, _ = c.req("GET", f"/v1/users/{user}/segments?k=abc")
    ok(st == 400 and j["error"] == "COUNT must be a whole number >= 0", "k=abc: 400 with SEGMENTS' own message")
    st, j, _, _ = c.req("GET", f"/v1/segments/{seg}/audience?n=99999999")
    ok(st == 400 and "over the limit" in j["error"], "n over --max-count: 400")
    st, j, _, _ = c.req("GET", f"/v1/segments/{seg}/reach")
    ok(st == 400 and "min" in j["error"], "reach without min: 400")
    st, j, _, _ = c.req("GET", f"/v1/users/{user}/segments?kk=3")
    ok(st == 400 and "unknown query parameter 'kk'" in j["error"], "an unknown query parameter: 400")
    st, j, _, _ = c.req("GET", f"/v1/users/{user}/segments?k=1&k=2")
    ok(st == 400 and "twice" in j["error"], "a repeated query parameter: 400")
    st, j, _, _ = c.req("GET", "/v1/users/%zz/segments")
    ok(st == 400 and "percent-encoding" in j["error"], "bad percent-encoding: 400")

    # ---- limits: 413 ---------------------------------------------------------------------------------
    big = json.dumps({"seeds": ["u%06d" % i for i in range(9000)]}).encode()
    st, j, _, _ = c.req("POST", "/v1/lookalike", raw_body=big)
    ok(st == 413 and "max-request" in j["error"] and len(big) > 65536, "a body over --max-request: 413")
    st, j, _, _ = c.req("POST", "/v1/lookalike", {"seeds": ["u%06d" % i for i in range(400)], "n": 5})
    ok(st == 413 and "max-args" in j["error"], "more ids than --max-args: 413")
    st, j, _, _ = c.req("POST", "/v1/lookalike", {"seeds": ["u%06d" % i for i in range(290)], "n": 5})
    ok(st == 200 and j["count"] == 5, "just under --max-args: 200")

    # ---- paths and methods ----------------------------------------------------------------------------
    st, j, _, _ = c.req("GET", "/v1/nothing-here")
    ok(st == 404 and j["error"] == "not found", "an unknown path: 404")
    st, j, resp, _ = c.req("PUT", "/v1/model")
    ok(st == 405 and resp.getheader("Allow") == "GET", "a known path with another method: 405 with Allow")
    st, j, resp, _ = c.req("GET", f"/v1/users/{user}")
    ok(st == 405 and resp.getheader("Allow") == "DELETE", "GET /v1/users/{id}: 405, Allow: DELETE")
    st, j, resp, _ = c.req("POST", "/")
    ok(st == 405 and "GET" in resp.getheader("Allow"), "POST to the page: 405")

    # ---- the page and health -------------------------------------------------------------------------------
    st, _, resp, body = c.req("GET", "/")
    etag = resp.getheader("ETag")
    ok(st == 200 and resp.getheader("Content-Type") == "text/html; charset=utf-8" and b"<title>starling" in body and
       etag and resp.getheader("Cache-Control") == "no-cache" and "default-src 'self'" in
       resp.getheader("Content-Security-Policy"), "GET /: the page, with an ETag, no-cache and a CSP")
    st, _, resp, body = c.req("GET", "/", headers={"If-None-Match": etag})
    ok(st == 304 and body == b"", "If-None-Match with the ETag: 304, no body")
    for p, ctype in [("/app.js", "text/javascript; charset=utf-8"), ("/style.css", "text/css; charset=utf-8"),
                     ("/favicon.svg", "image/svg+xml")]:
        st, _, resp, body = c.req("GET", p)
        ok(st == 200 and resp.getheader("Content-Type") == ctype and len(body) == int(resp.getheader("Content-Length"))
           and len(body) > 100, f"GET {p}: {ctype}")
    st, _, resp, body = c.req("HEAD", "/app.js")
    ok(st == 200 and body == b"" and int(resp.getheader("Content-Length")) > 1000, "HEAD: the headers, no body")
    st, j, _, _ = c.req("GET", "/healthz")
    ok(st == 200 and j == {"status": "ok"}, "/healthz: 200")
    st, j, _, _ = c.req("GET", "/readyz")
    ok(st == 200 and j == {"status": "ready", "generation": 1}, "/readyz: 200 with the model's generation")

    # ---- keep-alive, pipelining, Expect: 100-continue ----------------------------------------------------
    pipe = b"".join(f"GET /v1/users/{u}/segments?k=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() for u in users[:4])
    resp = raw_exchange(srv.http_port, pipe + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    parts = resp.split(b"HTTP/1.1 ")[1:]
    ok(len(parts) == 5 and all(p.startswith(b"200") for p in parts) and
       all(f'"user":"{u}"'.encode() in parts[i] for i, u in enumerate(users[:4])) and b"Connection: close" in parts[4],
       "5 pipelined requests on one connection: 5 responses in order, closed after Connection: close")
    s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=5)
    body = json.dumps({"seeds": users[:2], "n": 3}).encode()
    s.sendall(b"POST /v1/lookalike HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    interim = s.recv(4096)
    s.sendall(body)
    final = b""
    while b'"users"' not in final:
        chunk = s.recv(65536)
        if not chunk:
            break
        final += chunk
    s.close()
    ok(interim == b"HTTP/1.1 100 Continue\r\n\r\n" and final.startswith(b"HTTP/1.1 200"),
       "Expect: 100-continue gets 100 Continue, then the response")
    s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=5)
    s.sendall(b"POST /v1/lookalike HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Expect: 100-continue\r\nContent-Length: 99999999\r\n\r\n")
    resp = s.recv(4096)
    s.close()
    ok(status_of(resp) == 413, "Expect: 100-continue with a body over the limit: 413 at once, no 100")

    # ---- malformed HTTP: the status that fits, then the connection is closed --------------------------------
    for data, want, what in [
        (b"GARBAGE\r\n\r\n", 400, "no target and version"),
        (b"GET / HTTP/2.0\r\n\r\n", 505, "HTTP/2.0 in the request line"),
        (b"GET http://example.invalid/ HTTP/1.1\r\n\r\n", 400, "an absolute target"),
        (b"POST /v1/foldin HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, "chunked body"),
        (b"POST /v1/foldin HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef", 400, "two lengths"),
        (b"POST /v1/foldin HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "a negative length"),
        (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400, "an obs-fold header"),
        (b"GET / HTTP/1.1\r\nX-Bad: a\x01b\r\n\r\n", 400, "a control character in a header"),
        (b"GET / HTTP/1.1\r\nExpect: something\r\n\r\n", 417, "an unknown expectation"),
        (b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n", 431, "a 20 KB header"),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431, "150 header lines"),
    ]:
        resp = raw_exchange(srv.http_port, data)
        ok(status_of(resp) == want and b"Connection: close" in resp and b'"error"' in resp,
           f"{what}: {want}, JSON error, connection closed")
    st, j, _, _ = Client(srv.http_port).req("GET", "/healthz")
    ok(st == 200 and r.ping(), "the server still answers on both ports after malformed requests")

    # ---- the same statistics as RESP: INFO counts HTTP requests --------------------------------------------
    before = r.info("commandstats")["cmdstat_segments"]["calls"]
    for _ in range(7):
        c.req("GET", f"/v1/users/{user}/segments?k=2")
    after = r.info("commandstats")["cmdstat_segments"]["calls"]
    ok(after - before == 7, "INFO commandstats counts the 7 HTTP requests as SEGMENTS calls")

    # ---- /metrics through the Prometheus text-format parser ----------------------------------------------------
    st, _, resp, body = c.req("GET", "/metrics")
    text = body.decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    ok(st == 200 and resp.getheader("Content-Type").startswith("text/plain; version=0.0.4"),
       "/metrics: text/plain version 0.0.4")

    def sample(fam, suffix="", **labels):
        for s in fams[fam].samples:
            if s.name == fam + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        return None

    calls = r.info("commandstats")["cmdstat_segments"]["calls"]
    ok(set(fams) >= {"starling_commands", "starling_command_errors", "starling_command_duration_seconds",
                     "starling_connections", "starling_http_responses", "starling_model_generation",
                     "starling_model_age_seconds", "starling_journal_lag_events", "starling_model_loaded"},
       "every family is parsed: commands, errors, latency histogram, connections, model, journal lag")
    ok(sample("starling_commands", "_total", command="segments") == calls,
       "starling_commands_total{command=segments} equals INFO's calls")
    ok(fams["starling_command_duration_seconds"].type == "histogram", "the latency is a histogram")
    buckets = [(s.labels["le"], s.value) for s in fams["starling_command_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["command"] == "segments"]
    vals = [v for _, v in buckets]
    ok(buckets[-1][0] == "+Inf" and vals == sorted(vals) and
       sample("starling_command_duration_seconds", "_count", command="segments") == vals[-1] == calls,
       "its buckets are cumulative, +Inf last, _count = +Inf = calls")
    ok(sample("starling_command_errors", "_total", command="audience") >= 1 and
       sample("starling_http_responses", "_total", code="404") >= 3 and
       sample("starling_http_responses", "_total", code="413") >= 2,
       "errors per command and responses per status code are counted")
    ok(sample("starling_model_generation") == 1 and sample("starling_model_loaded") == 1 and
       sample("starling_connections", protocol="http") >= 1 and
       0 <= sample("starling_model_age_seconds") < 3600, "model generation and age, HTTP connections")
    # appendfsync everysec (the default): at most the writes above wait for
    # the next fdatasync.
    ok(sample("starling_journal_enabled") == 1 and 0 <= sample("starling_journal_lag_events") <= 2 and
       sample("starling_journal_bytes") > 0 and sample("starling_journal_write_failures", "_total") == 0,
       f"journal: enabled, lag {sample('starling_journal_lag_events')} writes "
       f"({sample('starling_journal_lag_seconds')} s), {sample('starling_journal_bytes'):.0f} bytes, no failure")
    lines = text.splitlines()
    ok(all(ln.startswith("# ") or ln.startswith("starling_") for ln in lines) and text.endswith("\n"),
       "every line is a comment or a starling_ sample, the body ends in a newline")
    srv.stop()
    note(f"metrics: {len(fams)} families, {len(lines)} lines")

    # ---- bearer token, request rate, maxclients ------------------------------------------------------------------
    secret = "s3cret-Token"
    srv = Server(path, "--http-port", 0, "--requirepass", secret, d=d)
    anon = Client(srv.http_port)
    st, j, resp, _ = anon.req("GET", f"/v1/users/{user}/segments")
    ok(st == 401 and resp.getheader("WWW-Authenticate") == 'Bearer realm="starling"' and "Bearer" in j["error"],
       "--requirepass: no token, 401 with WWW-Authenticate")
    st, _, _, _ = Client(srv.http_port, token="wrong").req("GET", f"/v1/users/{user}/segments")
    ok(st == 401, "a wrong token: 401")
    st, j, _, _ = Client(srv.http_port, token=secret).req("GET", f"/v1/users/{user}/segments?k=2")
    ok(st == 200 and len(j["segments"]) == 2, "the AUTH secret as a bearer token: 200")
    st, _, _, _ = anon.req("GET", "/metrics")
    ok(st == 401, "/metrics needs the token too")
    ok(anon.req("GET", "/healthz")[0] == 200 and anon.req("GET", "/readyz")[0] == 200 and anon.req("GET", "/")[0] == 200,
       "/healthz, /readyz and the page need no token")
    srv.stop()

    srv = Server(path, "--http-port", 0, "--http-rate", 2, "--http-burst", 5, d=d)
    lim = Client(srv.http_port)
    got = [lim.req("GET", "/v1/model")[:3] for _ in range(12)]
    codes = [g[0] for g in got]
    first429 = next((g for g in got if g[0] == 429), None)
    ok(codes[:5] == [200] * 5 and codes.count(429) >= 5 and first429[2].getheader("Retry-After") == "1" and
       "http-rate" in first429[1]["error"], f"--http-rate 2 --http-burst 5: 5 pass, then 429 with Retry-After ({codes})")
    ok(all(lim.req("GET", "/healthz")[0] == 200 for _ in range(10)), "health probes are not rate-limited")
    time.sleep(1.1)
    ok(lim.req("GET", "/v1/model")[0] == 200, "the bucket refills with time")
    srv.stop()

    srv = Server(path, "--http-port", 0, "--http-maxclients", 2, "--maxclients", 2, d=d)
    held = [socket.create_connection(("127.0.0.1", srv.http_port), timeout=5) for _ in range(2)]
    for h in held:
        h.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        h.recv(4096)
    resp = raw_exchange(srv.http_port, b"GET /v1/model HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    ok(status_of(resp) == 429 and b"http-maxclients" in resp, "a request past --http-maxclients: 429")
    resp = raw_exchange(srv.http_port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    ok(status_of(resp) == 200 and b"Connection: close" in resp, "/healthz still answers past --http-maxclients")
    resp = raw_exchange(srv.http_port, b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    ok(status_of(resp) == 200, "and /readyz")
    probes = [socket.create_connection(("127.0.0.1", srv.http_port), timeout=5) for _ in range(16)]
    rr = redis.Redis(host="127.0.0.1", port=srv.port, socket_timeout=5)
    deadline = time.monotonic() + 10  # until the server has accepted them all (a busy machine is slow to)
    while rr.info("clients")["connected_clients"] < len(held) + len(probes) + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    accepted = rr.info("clients")["connected_clients"]
    resp = raw_exchange(srv.http_port, b"")
    if status_of(resp) != 429:
        note(f"the server had {accepted} clients of {len(held) + len(probes) + 1} expected; it answered {resp[:80]!r}")
    ok(status_of(resp) == 429, "past the 16 connections kept for probes: refused at once with 429")
    ok(rr.ping() and rr.execute_command("MODEL", "INFO") is not None,
       "the HTTP connections take nothing of the RESP budget (--maxclients 2)")
    rr.close()
    for h in held + probes:
        h.close()
    srv.stop()

    # ---- while the first model loads: /healthz 200, /readyz and /v1 503, RESP -LOADING -------------------------
    jl = os.path.join(d, "loading.journal")
    srv = Server(path, "--http-port", 0, "--journal", jl, "--appendfsync", "always", d=d, wait=False,
                 env={"STARLING_TEST_LOAD_DELAY": "2"})
    deadline = time.monotonic() + 10
    m = None
    while not m and time.monotonic() < deadline:
        m = re.search(r"RESP port (\d+) answers -LOADING and http://127.0.0.1:(\d+)/readyz", srv.text())
        time.sleep(0.02)
    rp, hp = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    lc = Client(hp)
    st_h, j_h, _, _ = lc.req("GET", "/healthz")
    st_r, j_r, _, _ = lc.req("GET", "/readyz")
    st_v, j_v, _, _ = lc.req("GET", f"/v1/users/{user}/segments")
    st_m, _, _, body_m = lc.req("GET", "/metrics")
    ok(st_h == 200 and st_r == 503 and j_r == {"status": "loading"} and st_v == 503 and "no model" in j_v["error"],
       "before the model is loaded: /healthz 200, /readyz 503, /v1 503")
    ok(st_m == 200 and "starling_model_loaded 0" in body_m.decode(), "/metrics says starling_model_loaded 0")
    lr = redis.Redis(host="127.0.0.1", port=rp, decode_responses=True, socket_timeout=10)
    try:
        lr.execute_command("SEGMENTS", user)
        loading = None
    except redis.exceptions.BusyLoadingError as e:
        loading = str(e)
    except redis.ResponseError as e:
        loading = str(e)
    ok(lr.ping() and loading is not None and "loading the model" in loading and
       lr.info("model") == {"model_loaded": 0, "model_path": path},
       "over RESP: PING and INFO answer, SEGMENTS gets -LOADING")
    try:
        lr.execute_command("EVENT", "while-loading", "interest:sports:00", 1)
        w_loading = None
    except (redis.exceptions.BusyLoadingError, redis.ResponseError) as e:
        w_loading = str(e)
    st_e, _, _, _ = lc.req("POST", "/v1/events", {"user": "while-loading", "segment": "interest:sports:00"})
    ok(w_loading is not None and "loading the model" in w_loading and st_e == 503 and
       lr.info("persistence")["journal_enabled"] == 0,
       "writes wait for the model too: EVENT gets -LOADING, POST /v1/events 503, INFO shows no journal yet")
    srv.wait_ready()
    deadline = time.monotonic() + 20  # the delayed load: /readyz turns 200 when it is done
    st_r, j_r, _, _ = lc.req("GET", "/readyz")
    while st_r != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
        st_r, j_r, _, _ = lc.req("GET", "/readyz")
    st_v, _, _, _ = lc.req("GET", f"/v1/users/{user}/segments")
    ok(st_r == 200 and j_r["status"] == "ready" and st_v == 200, "once it is loaded: /readyz 200, /v1 200")
    ok(lr.execute_command("EVENT", "while-loading", "interest:sports:00", 1) == "OK" and
       lr.execute_command("HISTORY", "while-loading")[0] == "online", "and then EVENT is applied")
    srv.stop()

    # ---- a model written by `starling eval -o` carries its evaluation figures -----------------------------
    evm = os.path.join(d, "evaluated.model")
    starling("eval", ev, "--split", "holdout:0.2", "--min-events", 5, "--factors", 8, "--iterations", 3, "-o", evm,
             "-q")
    srv = Server(evm, "--http-port", 0, d=d)
    st, j, _, _ = Client(srv.http_port).req("GET", "/v1/model")
    e = j["evaluation"] if st == 200 else {}
    ok(e.get("split") == "holdout:0.2" and isinstance(e.get("recall@20"), float) and 0 < e["recall@20"] <= 1 and
       isinstance(e.get("recall@20.popularity"), float) and e.get("test_users", 0) > 0 and
       j["calibrated"] == 1 and "eval.recall@20" not in j["meta"],
       "eval -o stores its figures in META; /v1/model shows them under evaluation")
    srv.stop()

    # ---- the config file, and the idle timeout on an HTTP connection ------------------------------------------
    conf = os.path.join(d, "serve.conf")
    with open(conf, "w") as f:
        f.write("http-port 0\nhttp-bind 127.0.0.1\ntimeout 1\n")
    srv = Server(None, "--config", conf, path, d=d, wait=False)
    srv.want_http = True  # the HTTP port comes from the file alone
    srv.wait_ready()
    idle = socket.create_connection(("127.0.0.1", srv.http_port), timeout=10)
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = idle.recv(4096)
    t0 = time.monotonic()
    rest = idle.recv(4096)  # blocks until the server closes the idle connection
    waited = time.monotonic() - t0
    idle.close()
    ok(status_of(first) == 200 and rest == b"" and 0.5 < waited < 5,
       f"settings from the config file; an idle keep-alive HTTP connection is closed by timeout ({waited:.1f} s)")
    srv.stop()

    # ---- no HTTP unless asked ------------------------------------------------------------------------------
    srv = Server(path, d=d)
    ok(srv.http_port is None and "HTTP" not in srv.text(), "without --http-port there is no HTTP listener")
    srv.stop()
done()
