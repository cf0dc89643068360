#!/usr/bin/python3
"""The audience-explorer page in a real browser: Debian's headless Chromium,
driven through Debian's chromedriver by Debian's python3-selenium, against a
server on loopback. The page loads with no console or page error and no failed
request, shows the model card, querying a user draws one bar per segment (the
same segments SEGMENTS gives), querying a segment draws the reach curve
(decreasing in the threshold) and lists its best users, a seed list gives a
look-alike audience, clicking a bar explores that segment, the live panel fills
in, and a full-page screenshot is written under the test output ($TEST_OUT,
default build/test-output/http_page.png). Then the browser attacks the server
as a hostile page would (src/httpguard.c): from another origin, a no-cors
text/plain POST /v1/events and a JSON one that needs a preflight; through a
name mapped to 127.0.0.1 (DNS rebinding), the page and a write; none stores
the event, which the page's own origin can write.

Nothing is downloaded: the driver is /usr/bin/chromedriver (so selenium never
looks for one), the browser /usr/bin/chromium with a fresh profile. Every wait
is bounded, the browser is closed whatever happens, and the server is stopped
by its pid.
"""
import base64
import json
import os
import re
import signal
import sys
import socket
import subprocess
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve import Server, make_model  # noqa: E402
from tap import done, note, ok, skip_all  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
if not os.path.exists(CHROMIUM):
    skip_all(f"no {CHROMIUM} (install chromium: scripts/deps.sh test)")
if not os.path.exists(CHROMEDRIVER):
    skip_all(f"no {CHROMEDRIVER} (install chromium-driver: scripts/deps.sh test)")
try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.remote_connection import RemoteConnection
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:  # pragma: no cover
    skip_all(f"{e} (install python3-selenium: scripts/deps.sh test)")
try:
    import redis
except ImportError as e:  # pragma: no cover
    skip_all(f"{e} (install python3-redis: scripts/deps.sh test)")

OUT = os.environ.get("TEST_OUT", os.path.join(HERE, "..", "build", "test-output"))
os.makedirs(OUT, exist_ok=True)

WAIT = 20          # seconds for any one thing to appear on the page
LIVE_WAIT = 15     # seconds for the live panel's polls
REBIND = "rebind.evil.example"  # a name an attacker re-points at 127.0.0.1
EVIL = "evil.example"  # the attacker's site (its page: whatever its server answers)
# Every request from selenium to chromedriver is bounded too.
RemoteConnection.set_timeout(60)


class LoopbackService(Service):
    """chromedriver reached at 127.0.0.1, not "localhost": a minimal machine
    (a fresh chroot, a container) may have no /etc/hosts to resolve it."""

    @property
    def service_url(self):
        return f"http://127.0.0.1:{self.port}"

    def is_connectable(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False


def start_browser(d):
    """Chromium, headless, on a fresh profile in d, started here with its
    DevTools port on 127.0.0.1, and chromedriver attached to it there. (Left
    to itself, chromedriver would reach the browser at "localhost", which a
    minimal machine without /etc/hosts cannot resolve.) Returns the driver and
    the browser's process, which the caller stops."""
    profile = os.path.join(d, "chromium-profile")
    os.makedirs(profile)
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
            f"--host-resolver-rules=MAP {REBIND} 127.0.0.1,MAP {EVIL} 127.0.0.1",  # names for the attacks, here only
            "--window-size=1280,900", "about:blank"]
    # Its own process group: the browser's helpers (zygote, renderers) are
    # stopped with it.
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(d, "chromium.log"), "w"), env={**os.environ, "HOME": d},
                            start_new_session=True)
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + 30
    port = None
    while port is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            with open(port_file) as f:
                first = f.readline().strip()
            port = int(first) if first else None
        except (FileNotFoundError, ValueError):
            pass
        if port is None:
            time.sleep(0.05)
    if port is None:
        stop_process(proc)
        raise WebDriverException(f"chromium did not open its DevTools port within 30 s "
                                 f"(exit {proc.poll()}; see {os.path.join(d, 'chromium.log')})")
    opts = webdriver.ChromeOptions()
    opts.debugger_address = f"127.0.0.1:{port}"
    # The browser's console (console.error, uncaught errors) and its network
    # events (each response's status, each failed request) are logged.
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    opts.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
    service = LoopbackService(CHROMEDRIVER, log_path=os.path.join(d, "chromedriver.log"),
                              env={**os.environ, "HOME": d})
    try:
        driver = webdriver.Chrome(service=service, options=opts)
    except BaseException:
        stop_process(proc)
        raise
    try:
        # The page is laid out in a 1280x900 viewport, whatever the window around it.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(WAIT)
    except BaseException:
        driver.quit()
        stop_process(proc)
        raise
    return driver, proc


def stop_process(proc):
    """Stops the browser we started and every process of its group: SIGTERM,
    then SIGKILL for whatever is left after 10 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # helpers still alive after the main process
    except ProcessLookupError:
        pass
    proc.wait(10)


class Logs:
    """What the page made the browser log, gathered as the walk goes (each read
    of a log empties it): console errors, page errors (uncaught exceptions),
    the page's failed requests and the status of each response by URL."""

    def __init__(self, driver, origin):
        self.driver = driver
        self.origin = origin
        self.console_errors = []
        self.page_errors = []
        self.failed_requests = []
        self.status = {}
        self.urls = {}

    def drain(self):
        """Forgets what was logged before the page was opened (the browser's
        own start page)."""
        self.driver.get_log("browser")
        self.driver.get_log("performance")

    def read(self):
        for e in self.driver.get_log("browser"):
            if e.get("level") != "SEVERE":
                continue
            # An uncaught exception or rejected promise is a page error; anything
            # else at SEVERE (console.error, a resource that failed) a console error.
            (self.page_errors if e.get("source") == "javascript" else self.console_errors).append(e.get("message"))
        for e in self.driver.get_log("performance"):
            m = json.loads(e["message"])["message"]
            p = m.get("params", {})
            if m.get("method") == "Network.requestWillBeSent":
                # The page's requests, wherever they go: those its document made.
                if p.get("documentURL", "").startswith(self.origin):
                    self.urls[p["requestId"]] = p["request"]["url"]
            elif m.get("method") == "Network.responseReceived":
                if p["requestId"] in self.urls:
                    self.status.setdefault(p["response"]["url"], p["response"]["status"])
            elif m.get("method") == "Network.loadingFailed":
                if p["requestId"] in self.urls:
                    self.failed_requests.append(f"{self.urls[p['requestId']]}: {p.get('errorText')}")


def inner_text(driver, css):
    return driver.execute_script("return document.querySelector(arguments[0]).innerText", css)


def count(driver, css):
    return len(driver.find_elements(By.CSS_SELECTOR, css))


def fill(driver, css, text):
    """Clears a field and types into it, as page.fill does."""
    el = driver.find_element(By.CSS_SELECTOR, css)
    el.clear()
    el.send_keys(text)


def wait_for(driver, css, timeout=WAIT):
    WebDriverWait(driver, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)),
                                         f"nothing matched {css} within {timeout} s")


def full_page_screenshot(driver, path):
    """The whole page, beyond the viewport (Page.captureScreenshot)."""
    m = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = m.get("cssContentSize") or m["contentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    return path


def explore(driver, logs, url, user, segment, seeds):
    """Walks the page as a person would; returns what it saw (res["error"] if
    a step did not finish)."""
    res = {}
    try:
        logs.drain()
        driver.get(url)
        logs.read()
        res["status"] = logs.status.get(url)
        res["title"] = driver.title
        wait_for(driver, "#model-body dl")
        res["model_card"] = inner_text(driver, "#model-body")
        res["ready"] = inner_text(driver, "#status")

        fill(driver, "#user-id", user)
        driver.find_element(By.CSS_SELECTOR, "#user-form button").click()
        wait_for(driver, "#user-chart rect.bar")
        res["bars"] = count(driver, "#user-chart rect.bar")
        res["bar_labels"] = driver.execute_script(
            "return Array.from(document.querySelectorAll('#user-chart rect.bar'), (b) => b.dataset.label)")
        res["user_note"] = inner_text(driver, "#user-note")

        fill(driver, "#segment-id", segment)
        driver.find_element(By.CSS_SELECTOR, "#segment-form button").click()
        wait_for(driver, "#reach-chart path.curve")
        res["curve_points"] = int(driver.find_element(By.CSS_SELECTOR, "#reach-chart").get_attribute("data-points"))
        res["curve_dots"] = count(driver, "#reach-chart circle.dot")
        res["segment_users"] = count(driver, "#segment-users tbody tr")
        res["segment_note"] = inner_text(driver, "#segment-note")

        fill(driver, "#seeds", "\n".join(seeds))
        fill(driver, "#lookalike-n", "200")
        driver.find_element(By.CSS_SELECTOR, "#lookalike-form button").click()
        wait_for(driver, "#lookalike-users tbody tr")
        res["lookalike_rows"] = count(driver, "#lookalike-users tbody tr")
        res["lookalike_note"] = inner_text(driver, "#lookalike-note")

        # Clicking a bar explores that segment.
        first = res["bar_labels"][0]
        driver.find_element(By.CSS_SELECTOR, "#user-chart rect.bar").click()
        WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
            "const s = arguments[0], b = document.querySelector('#segment-note b');"
            "return document.getElementById('segment-id').value === s && b !== null && b.textContent === s;",
            first), f"clicking the bar did not explore {first} within {WAIT} s")
        res["clicked_segment"] = driver.find_element(By.CSS_SELECTOR, "#segment-id").get_property("value")

        # The live panel fills in after two polls, and a later poll lists the
        # look-alike query made above.
        WebDriverWait(driver, LIVE_WAIT).until(lambda d: d.execute_script(
            "return document.getElementById('rate').textContent !== '\u2013' &&"
            " document.getElementById('latency').textContent.includes('LOOKALIKE');"),
            f"the live panel did not fill in within {LIVE_WAIT} s")
        res["latency_rows"] = count(driver, "#latency tbody tr")
        res["hash"] = driver.execute_script("return location.hash")

        res["screenshot"] = full_page_screenshot(driver, os.path.join(OUT, "http_page.png"))
    except WebDriverException as e:
        # e.msg without chromedriver's native stack trace.
        res["error"] = f"{type(e).__name__}: {e.msg}"
    except (LookupError, ValueError, TypeError) as e:
        res["error"] = f"{type(e).__name__}: {e}"
    logs.read()
    return res


POST_JS = """
const done = arguments[arguments.length - 1];
fetch(arguments[0], {method: 'POST', mode: arguments[1], headers: {'Content-Type': arguments[2]}, body: arguments[3]})
  .then(r => done(r.type + ':' + r.status), e => done('error:' + e.name));
"""


def metric_403(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(r'^starling_http_responses_total\{code="403"\} (\d+)$', text, re.M)
    return int(m.group(1)) if m else 0


def attacks(driver, port, body):
    """Writes of the event body from pages the server must not trust, and
    from its own page; returns what each fetch saw (type:status, or the
    error), or the WebDriver error under "error"."""
    api = f"http://127.0.0.1:{port}/v1/events"
    out = {}
    try:
        # The attacker's page: another origin, with no Content-Security-Policy of ours.
        driver.get(f"http://{EVIL}:{port}/")
        out["simple"] = driver.execute_async_script(POST_JS, api, "no-cors", "text/plain", body)
        out["preflighted"] = driver.execute_async_script(POST_JS, api, "cors", "application/json", body)
        driver.get(f"http://{REBIND}:{port}/")
        out["rebound_page"] = driver.execute_script("return document.body.innerText")
        out["rebound"] = driver.execute_async_script(POST_JS, "/v1/events", "same-origin", "application/json", body)
        driver.get(f"http://127.0.0.1:{port}/")
        out["own"] = driver.execute_async_script(POST_JS, "/v1/events", "same-origin", "application/json",
                                                 body.replace("victim", "own-page"))
    except WebDriverException as e:
        out["error"] = f"{type(e).__name__}: {e.msg}"
    return out


# A helper of the browser may still be writing its profile as it exits.
with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as d:
    path, ev = make_model(d)
    # No privacy floors: the page is walked with small audiences (the floors
    # and their 403s are tested in test_http.py and test_journal_serve.py).
    # A journal, so that a write that got through would be stored.
    srv = Server(path, "--http-port", 0, "--min-audience", 0, "--min-seeds", 0, "--journal",
                 os.path.join(d, "browser.journal"), d=d)
    try:
        r = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True, socket_timeout=10)
        seg = "interest:sports:00"
        users = r.execute_command("AUDIENCE", seg, "COUNT", 4)[::2]
        user = users[0]
        want = r.execute_command("SEGMENTS", user, "COUNT", 10)[1][::2]
        url = f"http://127.0.0.1:{srv.http_port}/"
        try:
            driver, chrome = start_browser(d)
        except WebDriverException as e:
            driver = chrome = None
            log = os.path.join(d, "chromedriver.log")
            note(f"the browser did not start: {e.msg} {open(log).read()[-1500:] if os.path.exists(log) else ''}")
        res, logs, att = {"error": "the browser did not start"}, None, {}
        refused_before = metric_403(srv.http_port)
        if driver:
            try:
                logs = Logs(driver, url)
                res = explore(driver, logs, url, user, seg, users[1:])
                att = attacks(driver, srv.http_port, json.dumps({"user": "victim", "segment": seg, "weight": 9}))
            finally:
                driver.quit()
                stop_process(chrome)
        if res.get("error"):
            note(res["error"])
        console_errors = logs.console_errors if logs else None
        page_errors = logs.page_errors if logs else None
        failed = logs.failed_requests if logs else None
        ok(res.get("status") == 200 and res.get("title", "").startswith("starling"), "the page loads")
        ok(not res.get("error"), "every step ran to the end")
        ok(console_errors == [] and page_errors == [], f"no console error, no page error ({console_errors} {page_errors})")
        ok(failed == [], f"no failed request ({failed})")
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
        ok(cs.get("cmdstat_lookalike", {}).get("calls", 0) >= 1,
           "the page's requests ran through the command path (INFO commandstats)")
        # Two segment views (the form, the bar): each draws its 17-point curve
        # from two REACH CURVE scans (a coarse and a fine pass), not one per point.
        reach_calls = cs.get("cmdstat_reach", {}).get("calls", 0)
        ok(2 <= reach_calls <= 6, f"the reach curve comes from one scan per pass ({reach_calls} REACH calls for 2 views)")
        # ---- the browser as the attacker's tool --------------------------------------------------------
        ok(not att.get("error"), f"the attacks ran ({att.get('error')})")
        ok(att.get("simple") == "opaque:0", f"another site's no-cors text/plain POST is sent, its answer hidden ({att.get('simple')})")
        ok(att.get("preflighted", "").startswith("error:"), f"its JSON POST fails at the preflight ({att.get('preflighted')})")
        refused = metric_403(srv.http_port) - refused_before
        ok(refused >= 2, f"the server saw and refused both (403s counted: {refused})")
        ok("does not answer to the name" in att.get("rebound_page", "") and att.get("rebound") == "basic:421",
           f"through the rebound name: the page and the write get 421 ({att.get('rebound')})")
        ok(r.execute_command("HISTORY", "victim")[0] == "none", "none of the attacks stored the event")
        ok(att.get("own") == "basic:200" and r.execute_command("HISTORY", "own-page")[0] == "online",
           f"the page's own origin writes the same event ({att.get('own')})")
    finally:
        srv.stop()
done()
