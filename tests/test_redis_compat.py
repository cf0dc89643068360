#!/usr/bin/python3
"""Redis compatibility: what clients and tools send on connect and for
administration (CLIENT, HELLO 2|3 and RESP3 replies, TIME, DBSIZE, SCAN,
SELECT, TYPE, CONFIG, SLOWLOG, LATENCY, INFO sections, COMMAND), with
redis-py, redis-cli (RESP2 and -3) and raw sockets, values checked.
"""
import collections
import os
import socket
import subprocess
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
from tap import done, note, ok, skip  # noqa: E402

# Redis 8's CLIENT LIST fields, in its order.
CLIENT_FIELDS = ["id", "addr", "laddr", "fd", "name", "age", "idle", "flags", "db", "sub", "psub", "ssub", "multi",
                 "watch", "qbuf", "qbuf-free", "argv-mem", "multi-mem", "rbs", "rbp", "obl", "oll", "omem", "tot-mem",
                 "events", "cmd", "user", "redir", "resp", "lib-name", "lib-ver", "io-thread"]


def parse_line(line):
    return dict(kv.split("=", 1) for kv in line.split(" "))


def client_list(r, *args):
    text = r.execute_command("CLIENT", "LIST", *args)
    text = text.decode() if isinstance(text, bytes) else text
    return [parse_line(x) for x in text.split("\n") if x]


def recv_until(s, want, limit=1 << 20, deadline=5.0):
    """Bytes from s until `want` has been seen (or the time runs out)."""
    out = b""
    end = time.monotonic() + deadline
    while want not in out and len(out) < limit and time.monotonic() < end:
        try:
            chunk = s.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


def eventually(cond, deadline=5.0):
    """cond() polled until true or the deadline (a kill is carried out by the victim's loop, just after)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def cli(port, *args, resp3=False, password=None):
    cmd = ["redis-cli", "-p", str(port), *(["-3"] if resp3 else []), *(["-a", password, "--no-auth-warning"] if password else []),
           *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    return r.stdout.strip(), r.returncode


def error_of(r, *cmd):
    try:
        r.execute_command(*cmd)
        return None
    except redis.ResponseError as e:
        return str(e)


def test_client(srv):
    r = redis.Redis(host="127.0.0.1", port=srv.port, password="rootpass", decode_responses=True, socket_timeout=10)
    ok(r.execute_command("CLIENT", "SETINFO", "LIB-NAME", "go-redis(app)") == "OK" and
       r.execute_command("CLIENT", "SETINFO", "LIB-VER", "9.5.0") == "OK", "CLIENT SETINFO LIB-NAME and LIB-VER")
    ok(error_of(r, "CLIENT", "SETINFO", "LIB-NAME", "has space") is not None and
       "Unrecognized option" in (error_of(r, "CLIENT", "SETINFO", "LIB-FOO", "x") or ""),
       "CLIENT SETINFO refuses spaces and unknown attributes")
    ok(r.execute_command("CLIENT", "SETNAME", "admin-conn") == "OK" and
       r.execute_command("CLIENT", "GETNAME") == "admin-conn", "CLIENT SETNAME, GETNAME")
    my_id = r.execute_command("CLIENT", "ID")
    info = parse_line(r.execute_command("CLIENT", "INFO").strip())
    ok(list(info) == CLIENT_FIELDS, "CLIENT INFO has Redis 8's fields in its order")
    ok(int(info["id"]) == my_id and info["name"] == "admin-conn" and info["lib-name"] == "go-redis(app)" and
       info["lib-ver"] == "9.5.0" and info["cmd"] == "client|info" and info["resp"] == "2" and
       info["laddr"] == f"127.0.0.1:{srv.port}" and info["db"] == "0" and info["user"] == "default",
       f"CLIENT INFO describes this connection: {info}")

    # Connections spread over the two event loops: every one is listed from any of them.
    others = []
    for i in range(8):
        o = redis.Redis(host="127.0.0.1", port=srv.port, password="rootpass", decode_responses=True, socket_timeout=10)
        o.execute_command("CLIENT", "SETNAME", f"worker-{i}")
        others.append(o)
    seen = {}
    for o in [r] + others:
        seen[o.execute_command("CLIENT", "ID")] = {c["name"] for c in client_list(o)}
    want = {f"worker-{i}" for i in range(8)} | {"admin-conn"}
    ok(all(want <= names for names in seen.values()), "CLIENT LIST from every connection lists all nine")
    ids = [o.execute_command("CLIENT", "ID") for o in others[:2]]
    rows = client_list(r, "ID", *ids)
    ok(sorted(int(x["id"]) for x in rows) == sorted(ids), "CLIENT LIST ID id ... lists those alone")
    ok(client_list(r, "TYPE", "pubsub") == [] and len(client_list(r, "TYPE", "normal")) >= 9, "CLIENT LIST TYPE")
    ok(all(list(x) == CLIENT_FIELDS for x in client_list(r)), "every CLIENT LIST line has Redis's fields")
    # A pool opened at once: io-thread names the event loop serving each
    # connection, and each went to the loop serving fewest, whichever loop
    # accepted it (one wake-up can accept the whole backlog).
    loops = int(r.info("server")["event_loops"])
    burst = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(24)]
    for i, s in enumerate(burst):
        s.sendall(b"AUTH rootpass\r\nCLIENT SETNAME burst-%d\r\n" % i)
    for s in burst:
        recv_until(s, b"+OK\r\n+OK\r\n", deadline=10)
    per_loop = collections.Counter(int(c["io-thread"]) for c in client_list(r))
    # All 33 connections so far (none closed yet), within two of even: two
    # loops accepting at the same moment can both pick the same least loaded one.
    ok(set(per_loop) <= set(range(loops)) and len(per_loop) == loops and
       max(per_loop.values()) - min(per_loop.values()) <= 2,
       f"io-thread: connections opened at once are spread evenly over the event loops: {dict(per_loop)} over "
       f"{loops} loops")
    for s in burst:
        s.close()

    # KILL: by ID, by ADDR, the old form, by USER (sparing the caller), and the right it needs.
    victim = srv.raw()
    victim.sendall(b"AUTH rootpass\r\nCLIENT ID\r\n")
    got = recv_until(victim, b":", deadline=5)
    got += recv_until(victim, b"\r\n", deadline=2) if not got.endswith(b"\r\n") else b""
    vid = int(got.split(b":")[1].split(b"\r\n")[0])
    ok(r.execute_command("CLIENT", "KILL", "ID", vid) == 1, "CLIENT KILL ID kills one")
    victim.settimeout(5)
    ok(read_until_closed(victim) == b"", "the killed connection is closed by its loop")
    ok(r.execute_command("CLIENT", "KILL", "ID", vid) == 0, "a second KILL of the same id finds none")
    addr = [c["addr"] for c in client_list(r) if c["name"] == "worker-0"][0]
    ok(r.execute_command("CLIENT", "KILL", addr) in ("OK", True), "CLIENT KILL ip:port (old form): OK")
    ok(eventually(lambda: not any(c["name"] == "worker-0" for c in client_list(r))), "... and the connection is gone")
    ok("No such client" in (error_of(r, "CLIENT", "KILL", "10.9.9.9:1") or ""), "old form, unknown address: an error")
    ok(eventually(lambda: r.execute_command("CLIENT", "KILL", "ADDR", addr) == 0), "CLIENT KILL ADDR of a closed address: 0")
    reader = redis.Redis(host="127.0.0.1", port=srv.port, username="reader", password="rpw", decode_responses=True, socket_timeout=10)
    ok("no permissions" in (error_of(reader, "CLIENT", "KILL", "ID", my_id) or "") and
       "no permissions" in (error_of(reader, "CLIENT", "LIST") or ""),
       "CLIENT KILL and LIST need the admin right")
    ok(reader.execute_command("CLIENT", "INFO").startswith("id="), "CLIENT INFO needs none")
    n = r.execute_command("CLIENT", "KILL", "USER", "default")
    ok(n >= 7 and r.ping(), f"CLIENT KILL USER default kills the others ({n}) and spares the caller")
    ok(eventually(lambda: len([c for c in client_list(r) if c["user"] == "default"]) == 1),
       "only the caller is left of that user")
    ok(r.execute_command("CLIENT", "KILL", "USER", "reader", "SKIPME", "no") == 1, "CLIENT KILL USER reader")
    for o in others:
        o.close()

    # NO-EVICT, NO-TOUCH, REPLY.
    ok(all(r.execute_command("CLIENT", sub, v) == "OK" for sub in ("NO-EVICT", "NO-TOUCH") for v in ("on", "OFF")),
       "CLIENT NO-EVICT and NO-TOUCH ON|OFF: OK")
    ok(error_of(r, "CLIENT", "NO-EVICT", "maybe") == "syntax error", "... anything else is a syntax error")
    s = srv.raw()
    s.sendall(b"AUTH rootpass\r\nCLIENT REPLY OFF\r\nPING one\r\nPING two\r\nCLIENT REPLY ON\r\nPING three\r\n"
              b"CLIENT REPLY SKIP\r\nPING four\r\nPING five\r\nQUIT\r\n")
    s.settimeout(5)
    got = read_until_closed(s)
    ok(got == b"+OK\r\n+OK\r\n$5\r\nthree\r\n$4\r\nfive\r\n+OK\r\n",
       f"CLIENT REPLY OFF drops replies until ON; SKIP drops the next one: {got!r}")
    s = srv.raw()
    s.sendall(b"AUTH rootpass\r\nCLIENT REPLY SKIP\r\nAUDIENCE interest:sports:00 COUNT 2\r\nPING after\r\nQUIT\r\n")
    s.settimeout(10)
    got = read_until_closed(s)
    ok(got == b"+OK\r\n$5\r\nafter\r\n+OK\r\n", f"REPLY SKIP drops a heavy command's reply too: {got!r}")
    r.close()
    reader.close()


def test_hello(srv):
    s = srv.raw()
    s.sendall(b"HELLO 3 AUTH default rootpass SETNAME r3\r\nSEGMENTS u000001 COUNT 2\r\nZSCORE u:u000001 nosuch\r\n"
              b"CLIENT GETNAME\r\nCONFIG GET maxclients\r\nZSCORE u:u000001 interest:sports:00\r\nQUIT\r\n")
    s.settimeout(5)
    got = read_until_closed(s)
    ok(got.startswith(b"%7\r\n$6\r\nserver\r\n$8\r\nstarling\r\n") and b"$5\r\nproto\r\n:3\r\n" in got and
       b"$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n" in got,
       "HELLO 3 AUTH ... SETNAME: the server map in RESP3")
    after = got.split(b"*0\r\n", 1)[1]
    ok(after.startswith(b"*2\r\n+model\r\n*4\r\n$") and after.count(b"\r\n,") >= 2,
       f"SEGMENTS scores are RESP3 doubles: {after[:80]!r}")
    ok(b"\r\n_\r\n$2\r\nr3\r\n%1\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n," in after,
       "a missing member is `_`, the name was set, CONFIG GET is a map, ZSCORE a double")
    r2 = redis.Redis(host="127.0.0.1", port=srv.port, password="rootpass", socket_timeout=10)
    seg2 = r2.execute_command("SEGMENTS", "u000001", "COUNT", 2)
    z2 = float(r2.execute_command("ZSCORE", "u:u000001", "interest:sports:00"))
    z3 = float(after.rsplit(b",", 1)[1].split(b"\r\n")[0])
    ok(z2 == z3, "the RESP3 double is the RESP2 score")
    hello2 = r2.execute_command("HELLO", "2")
    ok(dict(zip(hello2[::2], hello2[1::2]))[b"proto"] == 2, "HELLO 2: a flat map, proto 2")
    ok("NOPROTO" in (error_of(r2, "HELLO", "4") or ""), "HELLO 4: NOPROTO")
    out, rc = cli(srv.port, "PING", resp3=True, password="rootpass")
    ok(rc == 0 and out == "PONG", f"redis-cli -3 PING: {out}")
    out3, rc3 = cli(srv.port, "SEGMENTS", "u000001", "COUNT", 2, resp3=True, password="rootpass")
    lines = out3.split("\n")
    ok(rc3 == 0 and lines[0] == "model" and lines[1] == seg2[1][0].decode() and
       float(lines[2]) == float(seg2[1][1]), f"redis-cli -3 SEGMENTS: the RESP2 answer ({lines})")
    out3, rc3 = cli(srv.port, "ZRANGE", "u:u000001", 0, 1, "WITHSCORES", resp3=True, password="rootpass")
    z = r2.execute_command("ZRANGE", "u:u000001", 0, 1, "WITHSCORES")
    ok(rc3 == 0 and out3.split("\n")[0] == z[0].decode() and float(out3.split("\n")[1]) == float(z[1]),
       "redis-cli -3 ZRANGE ... WITHSCORES")
    r2.close()


def test_keyspace(srv, model_users, model_segments):
    r = redis.Redis(host="127.0.0.1", port=srv.port, password="rootpass", decode_responses=True, socket_timeout=10)
    t0 = time.time()
    sec, usec = r.execute_command("TIME")
    ok(abs(int(sec) + int(usec) / 1e6 - t0) < 2 and 0 <= int(usec) < 1000000, "TIME: seconds and microseconds")
    ok(r.execute_command("SELECT", 0) in ("OK", True) and "out of range" in (error_of(r, "SELECT", 1) or ""),
       "SELECT 0 OK, SELECT 1 out of range")
    ok(r.type("u:u000001") == "zset" and r.type("s:interest:sports:00") == "zset" and r.type("x") == "none",
       "TYPE u:<user>, s:<segment>: zset")
    size = r.dbsize()
    ok(size == model_users + model_segments, f"DBSIZE: users + segments ({size})")
    keys = list(r.scan_iter(count=37))
    want = {f"u:{u}" for u in [f"u{i:06d}" for i in range(model_users)]}
    ok(len(keys) == len(set(keys)) == size and {k for k in keys if k.startswith("u:")} == want and
       sum(k.startswith("s:") for k in keys) == model_segments,
       f"SCAN walks each key once ({len(keys)})")
    ok(set(r.scan_iter(match="s:interest:*", count=50)) == {k for k in keys if k.startswith("s:interest:")},
       "SCAN MATCH")
    ok(list(r.scan_iter(_type="string", count=1000)) == [] and len(list(r.scan_iter(_type="zset", count=1000))) == size,
       "SCAN TYPE")
    ok("invalid cursor" in (error_of(r, "SCAN", "abc") or ""), "SCAN of a bad cursor: an error")
    # Online changes during a scan: keys there all along come back once; added ones are counted by DBSIZE.
    cursor, got = 0, []
    cursor, part = r.scan(cursor, count=100)
    got += part
    r.execute_command("EVENT", "brand-new-user", "interest:sports:00", 2)
    r.execute_command("FORGET", "u000150")
    while True:
        cursor, part = r.scan(cursor, count=100)
        got += part
        if cursor == 0:
            break
    stable = set(keys) - {"u:u000150"}
    ok(stable <= set(got) and len(got) == len(set(got)), "keys present for the whole scan are each returned once")
    ok("u:brand-new-user" in got and "u:u000150" not in got[len(part):], "a user added online is scanned")
    ok(r.dbsize() == size, "DBSIZE: one user added, one forgotten")
    r.close()


def test_config(srv, conf, model, d):
    r = redis.Redis(host="127.0.0.1", port=srv.port, password="rootpass", decode_responses=True, socket_timeout=10)
    ok(r.execute_command("CONFIG", "SET", "timeout", 0) in ("OK", True), "CONFIG SET timeout 0")
    ok(r.execute_command("CONFIG", "SET", "timeout", 1, "maxclients", 500) in ("OK", True) and
       r.config_get("timeout") == {"timeout": "1"} and r.config_get("maxclients") == {"maxclients": "500"},
       "CONFIG SET of two pairs")
    e = error_of(r, "CONFIG", "SET", "maxclients", 600, "timeout", -1)
    ok("'timeout'" in (e or "") and r.config_get("maxclients") == {"maxclients": "500"},
       f"a bad value refuses the whole SET, naming the parameter ({e})")
    e = error_of(r, "CONFIG", "SET", "port", 1)
    ok("'port'" in (e or "") and "immutable" in e, f"a setting unsafe to change is refused by name ({e})")
    got = r.config_get("*-threads")
    ok(set(got) == {"heavy-threads", "scan-threads"} and int(got["scan-threads"]) >= 1,
       f"CONFIG GET *-threads: the pool's and the scans' ({got})")
    e = error_of(r, "CONFIG", "SET", "no-such-thing", 1)
    ok("'no-such-thing'" in (e or ""), f"an unknown one too ({e})")
    ok("duplicate" in (error_of(r, "CONFIG", "SET", "timeout", 2, "timeout", 3) or ""), "a parameter given twice")
    idle = srv.raw()
    idle.sendall(b"AUTH rootpass\r\n")
    t0 = time.monotonic()
    idle.settimeout(8)
    got = read_until_closed(idle)
    ok(got == b"+OK\r\n" and time.monotonic() - t0 < 7, "the new timeout closes an idle connection")
    r.connection_pool.disconnect()  # r was idle too: the timeout may have closed it; the pool connects again
    r.execute_command("CONFIG", "SET", "timeout", 0, "min-audience", 1000000, "appendfsync", "always")
    ok("privacy floor" in (error_of(r, "AUDIENCE", "interest:sports:00", "COUNT", 5) or ""),
       "CONFIG SET min-audience applies to the next AUDIENCE")
    ok(r.info("persistence")["appendfsync"] == "always" and
       r.execute_command("EVENT", "u000003", "interest:sports:00", 1) in ("OK", True), "CONFIG SET appendfsync always")
    r.execute_command("CONFIG", "SET", "min-audience", 0, "appendfsync", "everysec", "slowlog-max-len", 64)
    reader = redis.Redis(host="127.0.0.1", port=srv.port, username="reader", password="rpw", decode_responses=True, socket_timeout=10)
    ok("no permissions" in (error_of(reader, "CONFIG", "SET", "min-audience", 0) or ""), "CONFIG SET needs the admin right")
    reader.close()
    r.ping()
    ok("cmdstat_ping" in r.execute_command("INFO", "commandstats"), "commandstats before RESETSTAT")
    ok(r.execute_command("CONFIG", "RESETSTAT") in ("OK", True), "CONFIG RESETSTAT")
    ok("cmdstat_ping" not in r.execute_command("INFO", "commandstats"), "... clears commandstats")
    before = open(conf).read()
    ok(r.execute_command("CONFIG", "REWRITE") in ("OK", True), "CONFIG REWRITE")
    after = open(conf).read().split("\n")
    ok(after[0] == "# compat test" and "user reader read rpw" in after and "min-audience 0" in after and
       "timeout 0" in after and "maxclients 500" in after and "appendfsync everysec" in after and
       "slowlog-max-len 64" in after and os.stat(conf).st_mode & 0o777 == 0o600,
       f"the file keeps its comments, lines and mode, with the changed settings ({after})")
    ok(before != "\n".join(after), "the file changed")
    r.close()
    plain = Server(model, d=d)
    try:
        p = redis.Redis(host="127.0.0.1", port=plain.port, decode_responses=True, socket_timeout=10)
        ok("without a config file" in (error_of(p, "CONFIG", "REWRITE") or ""), "CONFIG REWRITE without a config file")
        p.close()
    finally:
        plain.stop()


def test_diagnostics(srv):
    r = redis.Redis(host="127.0.0.1", port=srv.port, password="rootpass", decode_responses=True, socket_timeout=30)
    r.execute_command("CONFIG", "SET", "slowlog-log-slower-than", 0, "slowlog-max-len", 5)
    ok(r.execute_command("SLOWLOG", "RESET") in ("OK", True) and r.execute_command("SLOWLOG", "LEN") in (0, 1),
       "SLOWLOG RESET")
    r.execute_command("CLIENT", "SETNAME", "slowpoke")
    r.execute_command("SEGMENTS", "u000002", "COUNT", 3)
    r.execute_command("AUDIENCE", "interest:sports:00", "COUNT", 3)
    r.execute_command("ECHO", "x" * 300)
    r.execute_command("SCORE", "u000002", *[f"seg{i}" for i in range(40)])
    entries = r.execute_command("SLOWLOG", "GET", 10)
    ok(len(entries) == 5 and r.execute_command("SLOWLOG", "LEN") == 5, "slowlog-max-len 5 keeps five entries")
    e0 = entries[0]
    ok(len(e0) == 6 and e0[3][:2] == ["SCORE", "u000002"] and len(e0[3]) == 32 and
       e0[3][31] == "... (11 more arguments)" and e0[5] == "slowpoke" and e0[4].startswith("127.0.0.1:") and
       abs(int(e0[1]) - time.time()) < 5 and int(e0[2]) >= 0,
       f"SLOWLOG GET: id, time, usec, args cut at 32, address, name ({e0[:3]})")
    ok(entries[1][3] == ["ECHO", "x" * 128 + "... (172 more bytes)"], "a long argument is cut at 128 bytes")
    ok(entries[2][3][0] == "AUDIENCE" and entries[3][3][0] == "SEGMENTS", "heavy commands are logged too, newest first")
    ok([int(x[0]) for x in entries] == sorted((int(x[0]) for x in entries), reverse=True), "ids decrease")
    latest = r.execute_command("LATENCY", "LATEST")
    ok(len(latest) == 1 and latest[0][0] == "command" and int(latest[0][3]) >= int(latest[0][2]) >= 0,
       f"LATENCY LATEST: the command event ({latest})")
    r.execute_command("CONFIG", "SET", "slowlog-log-slower-than", 10000000)
    r.execute_command("SLOWLOG", "RESET")
    r.execute_command("PING")
    ok(r.execute_command("SLOWLOG", "LEN") == 0 and r.execute_command("SLOWLOG", "GET") == [],
       "a fast command stays out of the slow log")
    for _ in range(20):
        r.execute_command("ZSCORE", "u:u000001", "interest:sports:00")
    h = r.execute_command("LATENCY", "HISTOGRAM", "zscore", "ping")
    hd = dict(zip(h[::2], h[1::2]))
    z = dict(zip(hd["zscore"][::2], hd["zscore"][1::2]))
    buckets = z["histogram_usec"]
    ok(set(hd) == {"zscore", "ping"} and z["calls"] == 20 and buckets[-1] == 20 and
       all(b & (b - 1) == 0 for b in buckets[::2]) and buckets[1::2] == sorted(buckets[1::2]),
       f"LATENCY HISTOGRAM: calls, cumulative counts at powers of two of microseconds ({z})")
    mem = r.info("memory")
    # used_memory is glibc's count: 0 under a sanitizer's allocator (mem_allocator says which).
    ok((mem["used_memory"] > 0 or mem["mem_allocator"] != "libc") and mem["used_memory_rss"] > 0 and mem["used_memory_peak"] >= mem["used_memory"] and
       mem["used_memory_human"].endswith(("B", "K", "M", "G")) and mem["maxmemory_policy"] == "noeviction",
       "INFO memory: used_memory, rss, peak, human forms")
    ks = r.info("keyspace")
    ok(ks == {"db0": {"keys": r.dbsize(), "expires": 0, "avg_ttl": 0}}, f"INFO keyspace: db0 as Redis lays it out ({ks})")
    r.execute_command("CONFIG", "RESETSTAT")
    for _ in range(3):
        error_of(r, "SEGMENTS", "u1", "COUNT", "x")
    error_of(r, "NOSUCHCMD")
    es = r.execute_command("INFO", "errorstats")
    ok(es in ({"errorstat_ERR": {"count": 4}}, {"errorstat_ERR": "count=4"}), f"INFO errorstats counts error replies by code ({es})")
    ok(r.info("stats")["total_error_replies"] == 4, "total_error_replies")
    r.close()


# The 23 commands clients and tools send on connect or for administration (issue 16).
HANDSHAKE = [["CLIENT", "SETINFO", "LIB-NAME", "x"], ["CLIENT", "SETINFO", "LIB-VER", "x"], ["CLIENT", "SETNAME", "x"],
             ["CLIENT", "GETNAME"], ["CLIENT", "ID"], ["CLIENT", "LIST"], ["CLIENT", "INFO"], ["HELLO", "3"],
             ["HELLO", "2"], ["SELECT", "0"], ["CONFIG", "SET", "timeout", "0"], ["CONFIG", "RESETSTAT"],
             ["SLOWLOG", "GET", "10"], ["SLOWLOG", "LEN"], ["DBSIZE"], ["SCAN", "0", "COUNT", "10"],
             ["TYPE", "u:u000001"], ["TIME"], ["INFO", "memory"], ["INFO", "keyspace"], ["INFO", "commandstats"],
             ["COMMAND", "DOCS", "GET"], ["LATENCY", "LATEST"]]


def test_handshake(srv):
    s = srv.raw()
    s.settimeout(10)
    ok(len(HANDSHAKE) == 23, "23 commands")
    s.sendall(b"AUTH rootpass\r\n")
    recv_until(s, b"\r\n")
    failed = []
    for cmd in HANDSHAKE:
        s.sendall(("*%d\r\n" % len(cmd) + "".join(f"${len(a)}\r\n{a}\r\n" for a in cmd)).encode())
        s.sendall(b"PING marker\r\n")
        got = recv_until(s, b"$6\r\nmarker\r\n")
        if got.startswith(b"-") or not got.endswith(b"$6\r\nmarker\r\n"):
            failed.append((cmd, got[:80]))
    ok(failed == [], f"each of the 23 is answered, none with an error ({failed})")
    s.close()


def main():
    with tempfile.TemporaryDirectory() as d:
        model, _ = make_model(d, users=2000, segments=300, events=40000)
        conf = os.path.join(d, "compat.conf")
        with open(conf, "w") as f:
            f.write("# compat test\nrequirepass rootpass\nuser reader read rpw\nmin-audience 0\nmin-seeds 0\n")
        os.chmod(conf, 0o600)
        srv = Server(model, "--config", conf, "--journal", os.path.join(d, "j.aof"), d=d)
        try:
            test_client(srv)
            test_hello(srv)
            test_keyspace(srv, 2000, 300)
            test_config(srv, conf, model, d)
            test_diagnostics(srv)
            test_handshake(srv)
        finally:
            rc = srv.stop()
            ok(rc == 0, f"the server stops cleanly ({rc})")
    done()


if __name__ == "__main__":
    main()
