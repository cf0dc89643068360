#!/usr/bin/python3
"""What an operator installs (packaging/): the sample config, the systemd unit
and the logrotate file, and `make install-service` putting them under DESTDIR.

The sample starling.conf must name every option `starling serve --help` lists
(so it cannot fall behind a new option), show each default as the help does,
and start a server as it is, with only its directories moved into a temporary
one. The unit passes `systemd-analyze verify` when systemd's tools are there.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve import make_model  # noqa: E402
from tap import STARLING, done, ok, skip  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CONF = os.path.join(ROOT, "packaging", "starling.conf")
UNIT = os.path.join(ROOT, "packaging", "starling.service")
text = open(CONF).read()
helptext = subprocess.run([STARLING, "serve", "--help"], capture_output=True, text=True).stdout

# Every option of the help, with its default where the help gives one (a
# long option's description may continue on the next line: joined first).
helptext = re.sub(r"\n {20,}", " ", helptext)
names = [n for n in re.findall(r"^\s+(?:-\w, )?--([a-z][a-z-]*)", helptext, re.M) if n not in ("config", "help")]
settings = {}
for line in text.splitlines():
    m = re.match(r"^#?\s?([a-z][a-z-]*) (\S.*)$", line.strip())
    if m:
        settings.setdefault(m.group(1), m.group(2))
ok(len(names) >= 30 and "min-audience" in names and "appendfsync" in names, f"the help lists serve's options ({len(names)})")
missing = [n for n in names if n not in settings]
ok(not missing, f"packaging/starling.conf names every option of serve --help (missing: {missing})")
defaults = dict(re.findall(r"^\s+(?:-\w, )?--([a-z][a-z-]*).*\(default ([^)]*)\)$", helptext, re.M))
wrong = [(n, settings.get(n), v) for n, v in defaults.items()
         if n in settings and settings[n].strip('"') != v and not os.path.isabs(settings[n])]
ok(not wrong, f"each commented setting shows the default the help gives (differ: {wrong})")
active = [line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#")]
ok(all(a in names or a == "model" for a in active), f"every active line is a setting serve knows: {active}")

with tempfile.TemporaryDirectory() as d:
    model, _ = make_model(d)
    lib, logs = os.path.join(d, "lib"), os.path.join(d, "log")
    os.makedirs(os.path.join(lib, "models"))
    os.makedirs(logs)
    shutil.copy(model, os.path.join(lib, "models", "default.model"))
    conf = os.path.join(d, "starling.conf")
    with open(conf, "w") as f:
        f.write(text.replace("/var/lib/starling", lib).replace("/var/log/starling", logs))
    os.chmod(conf, 0o600)
    log = os.path.join(logs, "starling.log")
    p = subprocess.Popen([STARLING, "serve", "--config", conf, "--port", "0"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port = None
    end = time.monotonic() + 20
    while time.monotonic() < end and p.poll() is None and port is None:
        m = re.search(r"ready to accept connections on tcp [^ ]*:(\d+)", open(log).read() if os.path.exists(log) else "")
        port = int(m.group(1)) if m else None
        time.sleep(0.02)
    ok(port is not None, "the sample config starts a server as it is (its directories moved)")
    if port:
        out = subprocess.run(["redis-cli", "-p", str(port), "SEGMENTS", "u000001", "COUNT", "3"],
                             capture_output=True, text=True, timeout=10).stdout.split()
        ok(len(out) == 7 and out[0] == "model", f"it serves the model: {out}")
        ok(os.path.exists(os.path.join(lib, "starling.journal")), "with the journal the sample names")
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        code = p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()
        code = p.wait()
    ok(code == 0, f"and stops cleanly (exit code {code}; {p.stderr.read().decode()[-300:]})")

    # make install-service under DESTDIR: every file, paths rewritten for PREFIX.
    dest = os.path.join(d, "dest")
    r = subprocess.run(["make", "-s", "-C", ROOT, "install-service", f"DESTDIR={dest}", "PREFIX=/opt/starling"],
                       capture_output=True, text=True, timeout=120)
    unit = os.path.join(dest, "opt/starling/lib/systemd/system/starling.service")
    want = [unit, "opt/starling/etc/starling/starling.conf", "opt/starling/etc/logrotate.d/starling",
            "opt/starling/share/doc/starling/examples/starling.conf"]
    ok(r.returncode == 0 and all(os.path.isfile(os.path.join(dest, w)) for w in want),
       f"make install-service DESTDIR=... puts the unit, config and logrotate file in place {r.stderr[-300:]}")
    ok(os.path.exists(unit) and "ExecStart=/opt/starling/bin/starling serve --config /opt/starling/etc/starling/"
       "starling.conf" in open(unit).read(), "the installed unit runs PREFIX's binary on SYSCONFDIR's config")
    mine = os.path.join(dest, "opt/starling/etc/starling/starling.conf")
    with open(mine, "w") as f:
        f.write("model /somewhere/else.model\n")
    subprocess.run(["make", "-s", "-C", ROOT, "install-service", f"DESTDIR={dest}", "PREFIX=/opt/starling"],
                   capture_output=True, text=True, timeout=120)
    ok(open(mine).read() == "model /somewhere/else.model\n", "a second install leaves the operator's config alone")

    # The unit, checked by systemd's own parser (its binary pointed at this build).
    analyze = shutil.which("systemd-analyze")
    if analyze:
        u = os.path.join(d, "starling.service")
        with open(u, "w") as f:
            f.write(open(UNIT).read().replace("/usr/local/bin/starling", os.path.abspath(STARLING)))
        r = subprocess.run([analyze, "verify", "--man=no", u], capture_output=True, text=True, timeout=60)
        ok(r.returncode == 0, f"systemd-analyze verify accepts the unit {r.stdout}{r.stderr}")
    else:
        skip("systemd-analyze verify accepts the unit", "systemd-analyze is not installed")
    unit_text = open(UNIT).read()
    ok(all(k in unit_text for k in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes",
                                    "ProtectSystem=strict", "ReadWritePaths=/var/lib/starling", "PrivateTmp=yes",
                                    "User=starling")),
       "the unit: Type=notify, reload by SIGHUP, its own user, hardened")
    rot = open(os.path.join(ROOT, "packaging", "logrotate.d", "starling")).read()
    ok("copytruncate" not in rot.replace("No copytruncate", "") and "USR1" in rot,
       "logrotate renames and sends SIGUSR1 (no copytruncate)")
done()
