#!/usr/bin/python3
"""The client matrix: every Redis client and tool Debian 12 ships talks to a
real `starling serve` unchanged, and reads the same values.

One plan (written as JSON for the client scripts in tests/clients/) lists the
handshake commands newer clients send on connect, the targeting commands and
the sorted-set views, and a read-only user's commands. Each client connects,
authenticates with the password and as a user (AUTH user pass), runs the plan
and prints one JSON line per step; its lines are compared with redis-py's
(pure-Python parser, in this process): errors by message, numbers (scores
sent as strings or read as floats) within 1e-5, everything else exactly.
redis-py's own answers are first checked against each other (SEGMENTS against
ZREVRANGE and SCORE against ZSCORE), so the reference is not taken on trust.

Clients: redis-py (pure-Python and hiredis parsers), node-redis, ruby-redis,
phpredis, hiredis (a small C client compiled here), redis-cli (RESP2; RESP3
once the server answers HELLO 3), redis-benchmark, and Debian's Prometheus
Redis exporter. A client whose package is missing is skipped with the package
to install; `make test` installs them (scripts/deps.sh test).
Loopback only, ephemeral ports, every wait bounded; what is started is
stopped by its pid.
"""
import json
import math
import os
import re
import socket
import shutil
import subprocess
import sys
import tempfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:
    import redis
    from redis.connection import PythonParser
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (install python3-redis: scripts/deps.sh test)")
    sys.exit(0)
sys.path.insert(0, os.path.join(HERE, "clients"))
import redis_py  # noqa: E402
from serve import Server, free_port, make_model, wait_port  # noqa: E402
from tap import done, note, ok, skip  # noqa: E402

CLIENTS = os.path.join(HERE, "clients")
USER = "u000001"
SEG = "interest:sports:00"
TIMEOUT = 60

# What newer clients send on connect, sent by every client as raw commands
# (none of Debian 12's clients sends them itself). Each entry: the command and
# whether its reply differs between connections (then only its shape is
# compared). A command joins this list once the server answers it; those
# refused today are in LATER, probed and reported at each run.
HANDSHAKE = [
    (["CLIENT", "SETNAME", "matrix"], False),
    (["CLIENT", "GETNAME"], False),
    (["CLIENT", "ID"], True),
    (["HELLO", "2"], True),
    (["SELECT", "0"], False),
    (["PING"], False),
    (["ECHO", "starling"], False),
    (["TYPE", f"u:{USER}"], False),
    (["CONFIG", "GET", "timeout"], False),
    (["CLIENT", "SETINFO", "LIB-NAME", "matrix"], False),
    (["CLIENT", "SETINFO", "LIB-VER", "1.0"], False),
    (["DBSIZE"], False),
    (["TIME"], True),
]
LATER = [
    ["CLIENT", "SETINFO", "LIB-NAME", "matrix"], ["CLIENT", "SETINFO", "LIB-VER", "1.0"],
    ["CLIENT", "LIST"], ["CLIENT", "INFO"], ["HELLO", "3"], ["CONFIG", "SET", "timeout", "0"],
    ["CONFIG", "RESETSTAT"], ["SLOWLOG", "GET", "10"], ["SLOWLOG", "LEN"], ["DBSIZE"],
    ["SCAN", "0", "COUNT", "10"], ["TIME"], ["INFO", "memory"], ["INFO", "keyspace"],
    ["COMMAND", "DOCS", "GET"], ["LATENCY", "LATEST"],
]
TOP5 = ["SEGMENTS", USER, "COUNT", "5"]
SCORE = ["SCORE", USER, SEG, "keyword:sports:01", "no-such-segment"]
REACH = ["REACH", SEG, "MIN", "0.1"]
TARGETING = [
    TOP5,
    ["SEGMENTS", USER, "COUNT", "3", "UNSEEN"],
    ["SEGMENTS", "never-seen-user", "COUNT", "3"],
    SCORE,
    ["AUDIENCE", SEG, "COUNT", "12"],
    REACH,
    ["LOOKALIKE", "COUNT", "10", USER, "u000002", "u000003"],
    ["SIMILAR", SEG, "COUNT", "5"],
    ["HISTORY", USER],
    ["ZREVRANGE", f"u:{USER}", "0", "4", "WITHSCORES"],
    ["SEGMENTS", USER, "COUNT", "x"],
]
VIEWS = [
    ["zrevrange", f"u:{USER}", "0", "4"],
    ["zscore", f"u:{USER}", SEG],
    ["zscore", f"u:{USER}", "no-such-segment"],
    ["zcard", f"u:{USER}"],
    ["exists", f"u:{USER}"],
    ["exists", "u:never-seen-user"],
    ["type", f"u:{USER}"],
    ["type", "u:never-seen-user"],
]
USER_COMMANDS = [
    ["SEGMENTS", USER, "COUNT", "3"],
    ["FORGET", USER],
]


def flat(x):
    """A reply as a flat list: nested arrays, pairs and maps all read alike."""
    if isinstance(x, dict):
        return [e for k, v in x.items() for e in flat(k) + flat(v)]
    if isinstance(x, (list, tuple)):
        return [e for v in x for e in flat(v)]
    return [x]


def number(x):
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str) and re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", x):
        return float(x)
    return None


def error_text(msg):
    """An error without its code: redis-py drops `ERR `, other clients keep it."""
    return re.sub(r"^(ERR|NOPERM|NOAUTH|WRONGPASS|NOPROTO|LOADING|MISCONF) ", "", msg.strip())


def same(want, got, volatile=False):
    """'' when the client's line matches redis-py's, else what differs."""
    if "error" in want or "error" in got:
        if "error" in want and "error" in got and error_text(want["error"]) == error_text(got["error"]):
            return ""
        return f"want {want} got {got}"
    a, b = flat(want["reply"]), flat(got["reply"])
    if len(a) != len(b):
        return f"want {a} got {b}"
    for x, y in zip(a, b):
        nx, ny = number(x), number(y)
        if nx is not None and ny is not None:
            if volatile or math.isclose(nx, ny, rel_tol=1e-5, abs_tol=1e-5):
                continue
        elif volatile and type(x) is type(y):
            continue
        elif x == y:
            continue
        return f"want {x!r} got {y!r} in {b}"
    return ""


def plan_for(port):
    return {"host": "127.0.0.1", "port": port, "password": "rootpass", "user": "adserver",
            "user_password": "ads-pass", "commands": [c for c, _ in HANDSHAKE] + TARGETING,
            "views": VIEWS, "user_commands": USER_COMMANDS}


def reference(plan):
    """redis-py's answers (pure-Python parser), keyed by (step, i)."""
    lines = {}

    def keep(step, i, call):
        try:
            lines[(step, i)] = {"reply": redis_py.plain(call())}
        except redis.ResponseError as e:
            lines[(step, i)] = {"error": str(e)}
    redis_py.run(plan, PythonParser, keep)
    return lines


def check_reference(ref):
    """The reference agrees with itself before anything is compared with it."""
    def at(cmd):
        return ref[("cmd", len(HANDSHAKE) + TARGETING.index(cmd))]
    segs = flat(at(TOP5)["reply"][1])
    zrev = flat(ref[("view", 0)]["reply"])
    ok(len(segs) == 10 and segs[0::2] == zrev[0::2] and
       all(math.isclose(float(a), b, rel_tol=1e-6) for a, b in zip(segs[1::2], zrev[1::2])),
       "reference: SEGMENTS COUNT 5 and ZREVRANGE 0 4 WITHSCORES give the same segments and scores")
    score = at(SCORE)["reply"]
    ok(score[1][2] is None and math.isclose(float(score[1][0]), ref[("view", 1)]["reply"], rel_tol=1e-6),
       f"reference: SCORE agrees with ZSCORE, nil for an unknown segment ({score})")
    ok(ref[("user", 1)].get("error", "").startswith("User adserver has no permissions"),
       f"reference: the read user's FORGET is refused ({ref[('user', 1)]})")
    reach = at(REACH)["reply"]
    ok(isinstance(reach, int) and 10 <= reach <= 2000, f"reference: REACH is a count of users over the floor ({reach})")
    want = at(TOP5)
    off = {"reply": [want["reply"][0], [*want["reply"][1][:-1], float(want["reply"][1][-1]) + 1e-3]]}
    ok(same(want, want) == "" and same(want, off) != "" and same(want, {"error": "ERR x"}) != "",
       "the comparison itself: a score off by 1e-3, or an error, is a difference")


def compare(name, ref, lines):
    """One TAP line per client: every step of the plan matches the reference."""
    got = {}
    for line in lines:
        d = json.loads(line)
        got[(d["step"], d["i"])] = d
    problems = []
    volatile = {i for i, (_, v) in enumerate(HANDSHAKE) if v}
    for key, want in ref.items():
        if key not in got:
            problems.append(f"{key}: missing")
            continue
        diff = same(want, got[key], key[0] == "cmd" and key[1] in volatile)
        if diff:
            problems.append(f"{key}: {diff}")
    for p in problems[:5]:
        note(f"{name}: {p}")
    return ok(not problems, f"{name}: {len(ref)} steps (handshake, targeting, views, read user) match redis-py's")


def run_client(name, cmd, ref, env=None, missing=None):
    if missing:
        skip(f"{name}: the plan matches redis-py's", missing)
        return
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        ok(False, f"{name}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
        return
    compare(name, ref, [x for x in r.stdout.splitlines() if x.startswith("{")])


def python_module(name):
    r = subprocess.run(["/usr/bin/python3", "-c", f"import {name}"], capture_output=True)
    return r.returncode == 0


def probe_later(r):
    """The handshake and admin commands the server refuses today: named in the
    output, so the run shows which are still missing."""
    refused = []
    for cmd in LATER:
        if cmd == ["HELLO", "3"]:
            # redis-py 4 reads RESP2 only: HELLO 3 goes over a socket of its own.
            kw = r.connection_pool.connection_kwargs
            auth = ["AUTH", kw.get("username") or "default", kw["password"]] if kw.get("password") else []
            args = [*cmd, *auth]
            with socket.create_connection((kw.get("host", "127.0.0.1"), kw["port"]), timeout=10) as s:
                s.sendall(("*%d\r\n" % len(args) + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)).encode())
                first = s.recv(65536)
            if not first.startswith(b"%"):
                refused.append(f"HELLO 3 ({first[:40]!r})")
            continue
        try:
            if not r.execute_command(*cmd) and cmd[0] == "INFO":
                refused.append(f"{' '.join(cmd)} (no such section)")
        except redis.ResponseError as e:
            refused.append(f"{' '.join(cmd)} ({error_text(str(e))[:40]})")
    note(f"{len(LATER) - len(refused)} of {len(LATER)} later handshake/admin commands answered; "
         f"refused today: {'; '.join(refused) or 'none'}")
    return refused


def cli_command(op, args):
    """A view of the plan as the Redis command that answers it."""
    if op == "zrevrange":
        return ["ZREVRANGE", *args, "WITHSCORES"]
    return [op.upper(), *args]


def quoted(args):
    """One line of redis-cli's stdin: every argument in double quotes."""
    return " ".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in args)


def redis_cli(plan, proto):
    """redis-cli --json, one process per kind of step, each reading its
    commands from stdin on one connection (the handshake's state carries over);
    its replies as the matrix's lines."""
    lines = []
    base = ["redis-cli", proto, "--json", "-h", plan["host"], "-p", str(plan["port"]), "--no-auth-warning"]
    default = ["-a", plan["password"]]
    kinds = [("cmd", plan["commands"], default),
             ("view", [cli_command(v[0], v[1:]) for v in plan["views"]], default),
             ("user", plan["user_commands"], ["--user", plan["user"], "--pass", plan["user_password"]])]
    for step, cmds, auth in kinds:
        r = subprocess.run(base + auth, input="".join(quoted(c) + "\n" for c in cmds), capture_output=True,
                           text=True, timeout=TIMEOUT)
        for i, out in enumerate(r.stdout.splitlines()):
            try:
                if out.startswith("error:"):
                    line = {"step": step, "i": i, "error": json.loads(out[len("error:"):])}
                else:
                    line = {"step": step, "i": i, "reply": json.loads(out)}
            except json.JSONDecodeError:
                line = {"step": step, "i": i, "error": f"not JSON: {out[:200]!r}"}
            lines.append(json.dumps(line))
    return lines


def compile_hiredis(d):
    """tests/clients/hiredis_client.c built against Debian's libhiredis; (path, why not)."""
    if not os.path.exists("/usr/include/hiredis/hiredis.h"):
        return None, "hiredis not installed (libhiredis-dev)"
    if not shutil.which("gcc"):
        return None, "no gcc to build tests/clients/hiredis_client.c"
    exe = os.path.join(d, "hiredis_client")
    r = subprocess.run(["gcc", "-std=c11", "-D_GNU_SOURCE", "-O1", "-Wall", "-Wextra", "-Werror", "-o", exe,
                        os.path.join(CLIENTS, "hiredis_client.c"), "-lhiredis", "-ljansson"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    if r.returncode != 0:
        ok(False, f"hiredis_client.c compiles: {r.stderr.strip()[-400:]}")
        return None, "did not compile"
    return exe, None


def commandstats(r, name):
    s = r.info("commandstats").get(f"cmdstat_{name}", {})
    return s.get("calls", 0), s.get("failed_calls", 0)


def benchmark(srv, r):
    """redis-benchmark: bounded runs of PING and of a targeting command, no error."""
    if not shutil.which("redis-benchmark"):
        skip("redis-benchmark", "redis-benchmark not installed (redis-tools)")
        return
    base = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(srv.port), "-n", "2000", "-c", "4", "-q"]
    out = subprocess.run(base + ["-a", "rootpass", "-t", "ping"], capture_output=True, text=True,
                         timeout=TIMEOUT)
    text = out.stdout + out.stderr
    note(" ".join(x.strip() for x in text.splitlines() if "per second" in x))
    ok(out.returncode == 0 and "PING_INLINE:" in text and "PING_MBULK:" in text and "ERR" not in text,
       f"redis-benchmark -n 2000 -c 4 -t ping: both PING forms, no error ({text.strip()[-200:]!r})"
       if out.returncode else "redis-benchmark -n 2000 -c 4 -t ping: both PING forms, no error")
    calls0, failed0 = commandstats(r, "segments")
    out = subprocess.run(base + ["--user", "adserver", "-a", "ads-pass", "SEGMENTS", USER, "COUNT", "10"],
                         capture_output=True, text=True, timeout=TIMEOUT)
    text = out.stdout + out.stderr
    calls1, failed1 = commandstats(r, "segments")
    note(" ".join(x.strip() for x in text.splitlines() if "per second" in x or "WARNING" in x))
    ok(out.returncode == 0 and "requests per second" in text and "ERR" not in text and
       calls1 - calls0 >= 2000 and failed1 == failed0,
       f"redis-benchmark as the read user: SEGMENTS {USER} COUNT 10 2000 times, no error "
       f"({calls1 - calls0} calls, {failed1 - failed0} failed, exit {out.returncode})")


def exporter(srv, r, d):
    """Debian's Prometheus Redis exporter scraping the server: a few metric lines."""
    exe = shutil.which("prometheus-redis-exporter")
    if not exe:
        skip("prometheus-redis-exporter scrapes the server", "not installed (prometheus-redis-exporter)")
        return
    port = free_port()
    log = open(os.path.join(d, "exporter.log"), "w+")
    proc = subprocess.Popen([exe, "-redis.addr", f"redis://127.0.0.1:{srv.port}", "-redis.password", "rootpass",
                             "-web.listen-address", f"127.0.0.1:{port}", "-redis-only-metrics", "-debug"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        text = ""
        if wait_port(port, 15):
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        metrics = {}
        for line in text.splitlines():
            m = re.match(r"^(redis_[a-z_]+)(\{[^}]*\})? (\S+)$", line)
            if m:
                metrics.setdefault(m.group(1), float(m.group(3)))
                metrics[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        ok(metrics.get("redis_up") == 1.0, f"exporter: redis_up 1 ({metrics.get('redis_up')})")
        ok(metrics.get("redis_connected_clients", 0) >= 1 and metrics.get("redis_commands_processed_total", 0) > 0
           and metrics.get("redis_uptime_in_seconds", -1) >= 0,
           "exporter: connected_clients, commands_processed_total and uptime read from INFO")
        calls = commandstats(r, "segments")[0]
        got = metrics.get('redis_commands_total{cmd="segments"}')
        ok(got == calls and calls >= 2000 and "redis_commands_duration_seconds_total" in metrics,
           f"exporter: per-command calls and time read from INFO commandstats (segments: {got}, INFO says {calls})")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.seek(0)
    refused = sorted({m.group(1).strip() for m in re.finditer(r"c\.Do\(\) - err: (.*?)\"", log.read())})
    note(f"commands the exporter sends that the server refuses: {refused or 'none'}")


def matrix(srv, d):
    plan = plan_for(srv.port)
    path = os.path.join(d, "plan.json")
    with open(path, "w") as f:
        json.dump(plan, f)
    r = redis.Redis(host="127.0.0.1", port=srv.port, password="rootpass", socket_timeout=30)
    refused = probe_later(r)
    ok(not refused, f"every handshake and admin command newer clients and tools send is answered ({refused})")
    ref = reference(plan)
    check_reference(ref)
    py = "/usr/bin/python3"
    script = os.path.join(CLIENTS, "redis_py.py")
    run_client("redis-py (Python parser)", [py, script, path, "python"], ref)
    run_client("redis-py (hiredis parser)", [py, script, path, "hiredis"], ref,
               missing=None if python_module("hiredis") else "python3-hiredis not installed")
    node_path = "/usr/share/nodejs"
    run_client("node-redis", ["node", os.path.join(CLIENTS, "node_redis.js"), path], ref,
               env={"NODE_PATH": node_path},
               missing=None if shutil.which("node") and os.path.isdir(f"{node_path}/redis")
               else "node-redis or nodejs not installed")
    has_ruby = shutil.which("ruby") and subprocess.run(["ruby", "-e", "require 'redis'"],
                                                      capture_output=True).returncode == 0
    run_client("ruby-redis", ["ruby", os.path.join(CLIENTS, "ruby_redis.rb"), path], ref,
               missing=None if has_ruby else "ruby-redis not installed")
    has_php = shutil.which("php") and subprocess.run(["php", "-r", "exit(class_exists('Redis') ? 0 : 1);"],
                                                     capture_output=True).returncode == 0
    run_client("phpredis", ["php", os.path.join(CLIENTS, "phpredis.php"), path], ref,
               missing=None if has_php else "php-cli or php-redis not installed")
    exe, why = compile_hiredis(d)
    run_client("hiredis (C)", [exe, path], ref, missing=why)
    if shutil.which("redis-cli"):
        compare("redis-cli -2 --json", ref, redis_cli(plan, "-2"))
        if any(x.startswith("HELLO 3 ") for x in refused):
            skip("redis-cli -3 --json: the plan matches redis-py's", "HELLO 3 not supported yet")
        else:
            compare("redis-cli -3 --json", ref, redis_cli(plan, "-3"))
    else:
        skip("redis-cli", "redis-cli not installed (redis-tools)")
    benchmark(srv, r)
    exporter(srv, r, d)
    r.close()


def main():
    d = tempfile.mkdtemp(prefix="st-clients-")
    model, _ = make_model(d, validation=0)
    conf = os.path.join(d, "c.conf")
    with open(conf, "w") as f:
        f.write("requirepass rootpass\nuser adserver read ads-pass\n")
    os.chmod(conf, 0o600)
    srv = Server(model, "--config", conf, "--min-audience", 10, "--min-seeds", 2, d=d)
    try:
        matrix(srv, d)
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)
    done()


if __name__ == "__main__":
    main()
