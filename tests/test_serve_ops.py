#!/usr/bin/python3
"""Operations: hot reload under load with no failed request (MODEL RELOAD
and SIGHUP), a reload of a damaged file that keeps the old model, MODEL
RELOAD of another path when the admin option allows it, heavy commands off
the event loops, and SIGTERM answering in-flight requests before exiting.
"""
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import redis
except ImportError as e:  # pragma: no cover
    print(f"1..0 # SKIP {e} (install python3-redis: scripts/deps.sh test)")
    sys.exit(0)
from serve import Server, make_model, read_until_closed  # noqa: E402
from tap import done, ok  # noqa: E402


def model_field(r, name):
    mi = r.execute_command("MODEL", "INFO")
    return dict(zip(mi[::2], mi[1::2]))[name]


with tempfile.TemporaryDirectory() as d:
    path, ev = make_model(d)
    other, _ = make_model(d, name="other.model", users=1500, segments=200, events=30000, seed=4)
    served = os.path.join(d, "served.model")
    shutil.copy(path, served)
    srv = Server(served, "--allow-reload-path", d=d)
    r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)

    # Load: four clients send SEGMENTS and SCORE as fast as they can for a
    # bounded time while the model is reloaded ten times underneath them.
    stop = threading.Event()
    counts, failures = [0] * 4, []

    def hammer(i):
        c = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
        n = 0
        try:
            while not stop.is_set() and n < 200000:
                u = f"u{(n * 7 + i) % 2000:06d}"
                if n % 2:
                    src, pairs = c.execute_command("SEGMENTS", u, "COUNT", 10)
                    if src != "model" or len(pairs) != 20:
                        failures.append(("SEGMENTS", u, src))
                    counts[i] += 1
                else:
                    p = c.pipeline(transaction=False)
                    for j in range(8):
                        p.execute_command("SCORE", u, "interest:sports:00", "keyword:travel:05")
                    for src, sc in p.execute():
                        if src != "model" or None in sc:
                            failures.append(("SCORE", u, src))
                    counts[i] += 8
                n += 1
        except Exception as e:  # noqa: BLE001
            failures.append(("exception", repr(e)))
        c.close()

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    reloads_ok = 0
    for i in range(10):
        if i % 2:
            srv.send(signal.SIGHUP)
            time.sleep(0.15)
            reloads_ok += 1
        else:
            reloads_ok += r.execute_command("MODEL", "RELOAD") == "OK"
            time.sleep(0.1)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(30)
    ok(reloads_ok == 10, "ten reloads (MODEL RELOAD and SIGHUP) under load")
    ok(not failures, f"{sum(counts)} requests from 4 clients during the reloads, none failed")
    if failures:
        print(f"#   {failures[:3]}")
    ok(model_field(r, "generation") == 11, "generation 11 after ten reloads")
    ok(r.info("model")["model_reloads"] == 10, "INFO counts the reloads")

    # A damaged file: the reload fails, the served model stays.
    with open(served, "r+b") as f:
        f.seek(5000)
        f.write(b"\x55\x55")
    try:
        r.execute_command("MODEL", "RELOAD")
        got = ""
    except redis.ResponseError as e:
        got = str(e)
    ok("checksum mismatch" in got and "still serving the previous model" in got, "a damaged file is refused")
    ok(r.execute_command("SEGMENTS", "u000001", "COUNT", 2)[0] == "model" and model_field(r, "generation") == 11,
       "the previous model still answers")
    ok("checksum" in r.info("model")["model_last_reload_error"], "INFO shows the last reload error")

    # Another path, allowed by --allow-reload-path.
    ok(r.execute_command("MODEL", "RELOAD", other) == "OK", "MODEL RELOAD PATH (allowed by the admin option)")
    ok(model_field(r, "segments") == 200 and model_field(r, "path") == other, "the other model is served")

    # Heavy commands run off the event loops: a slow AUDIENCE does not hold up
    # SCORE on another connection.
    c2 = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
    res = {}

    def heavy():
        t = time.monotonic()
        for _ in range(20):
            c2.execute_command("AUDIENCE", "interest:sports:00", "COUNT", 1000)
        res["heavy"] = time.monotonic() - t

    th = threading.Thread(target=heavy)
    th.start()
    lat = []
    while th.is_alive() and len(lat) < 5000:
        t = time.monotonic()
        r.execute_command("SCORE", "u000001", "interest:sports:00")
        lat.append(time.monotonic() - t)
    th.join(30)
    lat.sort()
    ok(len(lat) > 0 and lat[len(lat) // 2] < 0.005, f"SCORE p50 {lat[len(lat) // 2] * 1e6:.0f} us while AUDIENCE runs")
    st = r.info("commandstats")["cmdstat_audience"]
    ok(st["calls"] == 20 and st["failed_calls"] == 0, "AUDIENCE timed by the same call path (commandstats)")
    c2.close()

    # SIGTERM with requests in flight: they are answered, then the server exits.
    s = srv.raw(timeout=15)
    s.sendall(b"AUDIENCE interest:sports:00 COUNT 1000\r\n" * 3 + b"SEGMENTS u000001 COUNT 1\r\nPING\r\n")
    time.sleep(0.05)
    srv.send(signal.SIGTERM)
    got = read_until_closed(s)
    ok(got.count(b"*2000\r\n") == 3 and got.endswith(b"+PONG\r\n"), "SIGTERM: in-flight requests answered in order")
    s.close()
    ok(srv.proc.wait(15) == 0, "then a clean exit")
    ok("SIGTERM" in srv.text() and "bye" in srv.text(), "the log tells the story")
    r.close()
done()
