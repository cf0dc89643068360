#!/usr/bin/python3
"""Sparse users must not lose to popularity, on both real data sets in
../shared/data (research use only).

Held-out users with at most 3 events, folded into the fixed segment factors:
- Last.fm listens: users:0.2, each held-out user folds in at most 3 of its
  artists (--fold-in-max 3; Last.fm has almost no truly sparse users);
- Twitter mentions (user x mentioned account): users:0.2 restricted to users
  with at most 3 mentioned accounts (--max-events 3), one to two folded in.
The popularity prior, with its weight fitted on validation users, must make
the model beat popularity on recall@20 beyond both confidence intervals.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import SHARED, STARLING, done, note, ok, skip_all  # noqa: E402

LASTFM = os.path.join(SHARED, "data", "lastfm-2k", "user_artists.dat")
TWITTER = os.path.join(SHARED, "data", "higgs-twitter", "higgs-mention_network.edgelist")
if not (os.path.exists(LASTFM) and os.path.exists(TWITTER)):
    skip_all("../shared/data (lastfm-2k and higgs-twitter) is absent")

RUNS = [("Last.fm, at most 3 artists folded in", LASTFM, ["--fold-in-max", "3"]),
        ("Twitter mentions, users with at most 3", TWITTER, ["--max-events", "3"])]
note(f"{'data':40} {'users':>6} {'plain fold-in':>14} {'with prior':>11} {'popularity':>11} {'lift':>6}")
for name, path, extra in RUNS:
    res = {}
    for label, w in (("plain", "0"), ("prior", "fit")):
        r = subprocess.run([STARLING, "eval", path, "--split", "users:0.2", *extra, "--prior-weight", w, "-q",
                            "--json"], capture_output=True, text=True)
        ok(r.returncode == 0, f"{name}: eval with prior weight {w}" + ("" if r.returncode == 0 else r.stderr))
        res[label] = json.loads(r.stdout)
    j = res["prior"]
    k = j["k"].index(20)
    model, pop = j["rankers"]["model"]["recall"][k], j["rankers"]["popularity"]["recall"][k]
    plain = res["plain"]["rankers"]["model"]["recall"][k]
    note(f"{name:40} {j['test_users']:6} {plain['mean']:14.4f} {model['mean']:11.4f} {pop['mean']:11.4f} "
         f"{model['mean'] / pop['mean']:5.2f}x  (prior weight {j['prior']['weight']})")
    ok(model["mean"] - model["ci95"] > pop["mean"] + pop["ci95"],
       f"{name}: recall@20 {model['mean']:.4f} beats popularity {pop['mean']:.4f} beyond both intervals")
    ok(model["mean"] >= plain["mean"], f"{name}: the prior never hurts ({model['mean']:.4f} >= {plain['mean']:.4f})")
done()
