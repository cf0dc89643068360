#!/usr/bin/python3
"""Targeting quality as a user meets it: `starling train` with the options
given (defaults when none), then `starling eval MODEL TEST` on held-out data,
against the popularity, item-kNN and EASE baselines on the same users.

Splits (each seeded, written to WORK/DATASET/):
  known  20% of each user's distinct segments held out (users with >= 5);
         the rest trains. recall@20 of the per-user ranking with the
         training segments excluded (what `segments --exclude-seen` gives).
  new    10% of the users (with >= 5 segments) held out whole; 80% of each
         one's segments folded in, the rest ranked (recall@10).
  sparse the new split with at most 3 segments folded in per user.

Data sets: lastfm (../shared/data/lastfm-2k), mention (../shared/data/
higgs-twitter mention graph: user, mentioned user, count), synth (the
built-in synthetic default, one row per distinct pair). Two shapes where
popularity is stronger, not in the default list: lastfm-head (Last.fm's 100
artists with the most listeners) and synth-head (the synthetic log over 100
segments: 50,000 users, 500,000 events).

usage: bench/quality.py [--data lastfm,mention,synth] [--splits known,new,sparse]
                        [--work DIR] [--json] [--baselines item-knn,ease] [--lookalike]
                        [--settings 'NAME=OPTS;NAME=OPTS'] [-- TRAIN OPTIONS...]
"""
import argparse
import json
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
STARLING = os.environ.get("STARLING", os.path.join(ROOT, "starling"))


def read_pairs(name):
    """(user, segment) -> value, as strings, for a data set."""
    pairs = {}
    if name == "lastfm":
        path = os.path.join(SHARED, "lastfm-2k", "user_artists.dat")
        with open(path) as f:
            next(f)
            for line in f:
                u, a, w = line.split("\t")
                pairs[(u, a)] = pairs.get((u, a), 0) + float(w)
    elif name == "mention":
        path = os.path.join(SHARED, "higgs-twitter", "higgs-mention_network.edgelist")
        with open(path) as f:
            for line in f:
                u, v, w = line.split()
                pairs[(u, v)] = pairs.get((u, v), 0) + float(w)
    elif name in ("synth", "synth-head"):
        segs, events = ("2000", "2000000") if name == "synth" else ("100", "500000")
        out = os.path.join(WORK, name + "-events.csv")
        if not os.path.exists(out):
            subprocess.run([STARLING, "synth", "-o", out, "--users", "50000", "--segments", segs, "--events",
                            events, "--seed", "42"], check=True)
        with open(out) as f:
            next(f)
            for line in f:
                c = line.split(",")
                pairs[(c[0], c[1])] = 1.0
    elif name == "lastfm-head":
        pairs = read_pairs("lastfm")
        listeners = {}
        for (u, a) in pairs:
            listeners[a] = listeners.get(a, 0) + 1
        head = set(sorted(listeners, key=lambda a: (-listeners[a], a))[:100])
        pairs = {k: w for k, w in pairs.items() if k[1] in head}
    else:
        raise SystemExit("unknown data set " + name)
    return pairs


def write(path, rows):
    with open(path, "w") as f:
        f.write("user\tsegment\tweight\n")
        for (u, s), w in rows:
            f.write("%s\t%s\t%g\n" % (u, s, w))


def make_split(name, split, pairs):
    d = os.path.join(WORK, name, split)
    train, test = os.path.join(d, "train.tsv"), os.path.join(d, "test.tsv")
    if os.path.exists(test):
        return train, test
    os.makedirs(d, exist_ok=True)
    by_user = {}
    for (u, s), w in sorted(pairs.items()):
        by_user.setdefault(u, []).append((s, w))
    rng = random.Random(42)
    tr, te = [], []
    users = sorted(by_user)
    if split == "known":
        for u in users:
            segs = by_user[u]
            if len(segs) >= 5:
                rng.shuffle(segs)
                h = max(1, int(round(0.2 * len(segs))))
                te += [((u, s), w) for s, w in segs[:h]]
                tr += [((u, s), w) for s, w in segs[h:]]
            else:
                tr += [((u, s), w) for s, w in segs]
    else:
        for u in users:
            segs = by_user[u]
            held = len(segs) >= 5 and rng.random() < 0.1
            (te if held else tr).extend(((u, s), w) for s, w in segs)
    write(train, tr)
    write(test, te)
    return train, test


def run_eval(model, test, split, baselines, lookalike):
    cmd = [STARLING, "eval", model, test, "-k", "10,20", "--validation", "0", "--json", "-q", "--baselines",
           baselines]
    if split == "sparse":
        cmd += ["--fold-in-max", "3"]
    if lookalike and split in ("known", "new"):
        cmd += ["--lookalike"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("eval failed: %s\n%s" % (" ".join(cmd), r.stderr))
    return json.loads(r.stdout)


def cell(x):
    return "%.4f +- %.4f" % (x["mean"], x["ci95"])


def print_table(out):
    print("%-8s %-7s %-14s %-16s %16s %16s %16s %16s %7s %7s %7s" % (
        "data", "split", "setting", "metric", "model", "popularity", "item-knn", "ease", "x pop", "x knn", "x ease"))
    for name, split, tag, res in out:
        rankers = res["rankers"]
        at = {k: i for i, k in enumerate(res["k"])}
        K = 10 if split != "known" else 20
        for metric in ("recall", "ndcg"):
            m = rankers["model"][metric][at[K]]
            row = ["%-8s %-7s %-14s %-16s %16s" % (name, split, tag, "%s@%d" % (metric, K), cell(m))]
            lifts = []
            for rk in ("popularity", "item-knn", "ease"):
                if rk in rankers:
                    b = rankers[rk][metric][at[K]]
                    row.append("%16s" % cell(b))
                    lifts.append("%6.2fx" % (m["mean"] / b["mean"]) if b["mean"] > 0 else "%7s" % "-")
                else:
                    row.append("%16s" % "skipped")
                    lifts.append("%7s" % "-")
            print(" ".join(row + lifts))
        if "lookalike" in res:
            la, si = res["lookalike"]["rankers"], res["similar"]["rankers"]
            if res["lookalike"]["segments"]:
                print("%-8s %-7s %-14s LOOKALIKE recall@N=|held|: model %s, most active %s, co-occurrence %s" % (
                    name, split, tag, cell(la["model"]["recall_at_held_out"]),
                    cell(la["most active"]["recall_at_held_out"]), cell(la["co-occurrence"]["recall_at_held_out"])))
            print("%-8s %-7s %-14s SIMILAR overlap@10: model %s, factor cosine %s, popularity %s (gain %s)" % (
                name, split, tag, cell(si["model"]["overlap_at_10"]), cell(si["factor cosine"]["overlap_at_10"]),
                cell(si["popularity"]["overlap_at_10"]), cell(si["popularity"]["model_gain"])))
    sys.stdout.flush()


def main():
    global WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="lastfm,mention,synth")
    ap.add_argument("--splits", default="known,new,sparse")
    ap.add_argument("--work", default="/tmp/starling-quality")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--baselines", default="item-knn,ease", help="passed to eval --baselines")
    ap.add_argument("--lookalike", action="store_true", help="also LOOKALIKE and SIMILAR on the known split, "
                    "SIMILAR on the new one (its held-out users' every segment)")
    ap.add_argument("--settings", default="", help="NAME=TRAIN OPTIONS;NAME=...: several training settings "
                    "(default: the train options after --, named 'defaults')")
    ap.add_argument("train", nargs="*")
    a = ap.parse_args()
    WORK = a.work
    os.makedirs(WORK, exist_ok=True)
    settings = [("defaults", a.train)]
    if a.settings:
        settings = [(kv.split("=", 1)[0], kv.split("=", 1)[1].split()) for kv in a.settings.split(";") if kv]
    out = []
    for name in a.data.split(","):
        if not name.startswith("synth") and not os.path.isdir(SHARED):
            print("skip %s: %s is absent" % (name, SHARED))
            continue
        pairs = read_pairs(name)
        for split in a.splits.split(","):
            base = "known" if split == "known" else "new"
            train, test = make_split(name, base, pairs)
            for tag, opts in settings:
                model = os.path.join(WORK, name, base, "m-%s.model" % tag)
                r = subprocess.run([STARLING, "train", train, "-o", model, "-q"] + opts, capture_output=True,
                                   text=True)
                if r.returncode != 0:
                    raise SystemExit("train failed on %s: %s" % (name, r.stderr))
                out.append((name, split, tag, run_eval(model, test, split, a.baselines, a.lookalike)))
                if not a.json:
                    print_table(out[-1:])
    if a.json:
        print(json.dumps([{"data": n, "split": s, "setting": t, "result": r} for n, s, t, r in out]))


if __name__ == "__main__":
    main()
