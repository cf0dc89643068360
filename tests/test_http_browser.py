#!/usr/bin/python3
"""The audience-explorer page in a real browser: Debian's headless Chromium,
driven by playwright-core (tests/browser/explore.js), against a server on
loopback. The page loads with no console or page error and no failed request,
shows the model card, querying a user draws one bar per segment (the same
segments SEGMENTS gives), querying a segment draws the reach curve (decreasing
in the threshold) and lists its best users, a seed list gives a look-alike
audience, clicking a bar explores that segment, the live panel fills in, and
a screenshot is written under the test output ($TEST_OUT, default
build/test-output/http_page.png).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve import Server, make_model  # noqa: E402
from tap import done, note, ok, skip_all  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "browser", "explore.js")
if not os.path.exists("/usr/bin/chromium"):
    skip_all("no /usr/bin/chromium (scripts/deps.sh test installs it)")
if not shutil.which("node") or not os.path.isdir(os.path.join(HERE, "browser", "node_modules", "playwright-core")):
    skip_all("no node or playwright-core (scripts/deps.sh test installs them into tests/browser)")
OUT = os.environ.get("TEST_OUT", os.path.join(HERE, "..", "build", "test-output"))
os.makedirs(OUT, exist_ok=True)

try:
    import redis
except ImportError as e:  # pragma: no cover
    skip_all(f"{e} (install python3-redis: scripts/deps.sh test)")

with tempfile.TemporaryDirectory() as d:
    path, ev = make_model(d)
    srv = Server(path, "--http-port", 0, d=d)
    try:
        r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
        seg = "interest:sports:00"
        users = r.execute_command("AUDIENCE", seg, "COUNT", 4)[::2]
        user = users[0]
        want = r.execute_command("SEGMENTS", user, "COUNT", 10)[1][::2]
        url = f"http://127.0.0.1:{srv.http_port}/"
        p = subprocess.run(["node", DRIVER, url, OUT, user, seg, ",".join(users[1:])], capture_output=True, text=True,
                           timeout=150, env={**os.environ, "HOME": d})
        try:
            res = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            res = {"error": f"no result from the driver: {p.stdout[-500:]} {p.stderr[-1500:]}"}
        if res.get("error"):
            note(res["error"])
        ok(res.get("status") == 200 and res.get("title", "").startswith("starling"), "the page loads")
        ok(not res.get("error"), "every step ran to the end")
        ok(res.get("console_errors") == [] and res.get("page_errors") == [],
           f"no console error, no page error ({res.get('console_errors')} {res.get('page_errors')})")
        ok(res.get("failed_requests") == [], f"no failed request ({res.get('failed_requests')})")
        ok("2,000" in res.get("model_card", "") and "Hyper-parameters".upper() in res.get("model_card", "").upper()
           and "conjugate gradient" in res.get("model_card", ""), "the model card shows the data and hyper-parameters")
        ok(res.get("ready", "").startswith("ready"), "the status shows the server ready")
        ok(res.get("bars") == 10 and res.get("bar_labels") == want,
           "querying a user draws 10 bars, the segments SEGMENTS ranks, in order")
        ok(res.get("curve_points") == 17 and res.get("curve_dots") == 17, "querying a segment draws its reach curve")
        ok(res.get("segment_users") == 12 and "users score" in res.get("segment_note", ""),
           "and lists its 12 best users")
        ok(res.get("lookalike_rows") == 12 and res.get("lookalike_note", "").startswith("200 users"),
           "a seed list gives a look-alike audience of 200, its size shown")
        ok(res.get("clicked_segment") == want[0], "clicking a bar explores that segment")
        ok(res.get("latency_rows", 0) >= 4, "the live panel lists per-command latencies")
        ok(res.get("hash", "").startswith("#user="), "the view is kept in the location hash")
        shot = res.get("screenshot")
        ok(shot and os.path.exists(shot) and os.path.getsize(shot) > 20000, f"a screenshot is written: {shot}")
        # The same statistics: the page's requests were counted by INFO, over RESP.
        cs = r.info("commandstats")
        ok(cs["cmdstat_reach"]["calls"] >= 17 and cs["cmdstat_lookalike"]["calls"] >= 1,
           "the page's requests ran through the command path (INFO commandstats)")
    finally:
        srv.stop()
done()
