"""TAP output for the Python tests: ok(), skip_all(), done()."""
import os
import subprocess
import sys

STARLING = os.environ.get("STARLING", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "starling"))
SHARED = os.environ.get("STARLING_SHARED",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
_n = 0
_failed = 0


def ok(cond, desc):
    global _n, _failed
    _n += 1
    print(("ok" if cond else "not ok") + f" {_n} - {desc}", flush=True)
    if not cond:
        _failed += 1
    return cond


def skip(desc, reason):
    """A test that cannot mean anything in this run: TAP counts it as passed."""
    global _n
    _n += 1
    print(f"ok {_n} - {desc} # SKIP {reason}", flush=True)


def note(msg):
    print(f"# {msg}", flush=True)


def skip_all(reason):
    print(f"1..0 # SKIP {reason}")
    sys.exit(0)


def done():
    print(f"1..{_n}")
    sys.exit(1 if _failed else 0)


def starling(*args, stdin=None, check=True):
    """Runs the binary; returns stdout as text."""
    r = subprocess.run([STARLING, *map(str, args)], input=stdin, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"starling {' '.join(map(str, args))}: exit {r.returncode}: {r.stderr}")
    return r.stdout
