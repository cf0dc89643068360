#!/usr/bin/python3
"""Targeting quality as a user meets it: `starling train` with its defaults,
then `starling eval MODEL TEST` on held-out data, against popularity and
item-kNN on the same users, and LOOKALIKE and SIMILAR on held-out engagement.

Data sets: the built-in synthetic default (always), Last.fm 2K and the
Twitter mention graph (../shared/data, research use: skipped with the reason
when absent). The split is bench/quality.py's known-user split: 20% of each
user's distinct segments held out (users with at least 5), seed 42; SIMILAR
is also measured on its new-user split (10% of those users held out whole).

The thresholds are the lifts measured with the defaults (docs/EVALUATION.md,
bench/README.md) less a margin for the run-to-run spread: a regression of
the trainer, the prior fit, the baselines or the metrics fails here.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bench"))
import quality  # noqa: E402
from tap import SHARED, STARLING, done, note, ok, skip  # noqa: E402

# data set: (least lift of the model's recall@20 over popularity, over
# item-kNN or None where item-kNN still wins, LOOKALIKE's members recall
# (the target's protocol) over the most active users and over co-occurrence,
# its held-out recall over the most active users (and above co-occurrence)
# or None where it still fails, SIMILAR over popularity or None).
# LOOKALIKE measured (docs/EVALUATION.md): members 6.08x / 1.33x on Last.fm,
# 15.5x / 30x on the mention graph, 2.17x / 2.62x on the synthetic set;
# held out 9.12x on Last.fm, 2.39x on the mention graph, 0.77x synthetic.
EXPECT = {
    "synth": (1.03, 1.02, (1.9, 2.2), None, None),
    "lastfm": (2.4, 1.05, (5.0, 1.2), 1.3, 1.5),
    "mention": (1.5, None, (12.0, 10.0), 1.3, 1.05),
}
# The prior's shape train's validation fit chooses (docs/EVALUATION.md): the
# linear one where a few segments hold far more users than the rest (the
# mention graph: a gain of +0.021 averaged over recall@20 and @10, 2.9
# standard errors), the log one elsewhere (Last.fm loses with the linear
# prior, the synthetic set does not gain).
SHAPE = {"synth": "log", "lastfm": "log", "mention": "linear"}
# SIMILAR on the new-user split (bench/quality.py's: 10% of the users with at
# least 5 segments held out whole), whose truth is the co-engagement of users
# the model never saw: the least lift over popularity, and the model's paired
# gain over it must clear its 95% interval. Measured (docs/EVALUATION.md):
# 1.08x on the synthetic set (+0.036 +- 0.010), 1.99x on Last.fm, 1.29x on
# the mention graph (+0.102 +- 0.060); 1.04x to 1.08x, 2.0x to 2.6x and 1.3x
# to 1.55x over three split seeds.
SIM_NEW = {"synth": 1.04, "lastfm": 1.6, "mention": 1.1}


def lift(a, b):
    return a / b if b > 0 else float("inf")


quality.SHARED = os.path.join(SHARED, "data")
quality.STARLING = STARLING
with tempfile.TemporaryDirectory() as d:
    quality.WORK = d
    for name, (pop_min, knn_min, (mem_act, mem_co), lal_min, sim_min) in EXPECT.items():
        if name != "synth" and not os.path.isdir(quality.SHARED):
            skip(f"{name}: the model beats popularity and item-kNN", f"{quality.SHARED} is absent")
            continue
        train, test = quality.make_split(name, "known", quality.read_pairs(name))
        model = os.path.join(d, name + ".model")
        r = subprocess.run([STARLING, "train", train, "-o", model, "-q"], capture_output=True, text=True)
        ok(r.returncode == 0, f"{name}: starling train with defaults" + ("" if r.returncode == 0 else r.stderr))
        r = subprocess.run([STARLING, "eval", model, test, "-k", "20", "--baselines", "item-knn", "--lookalike",
                            "--json", "-q"], capture_output=True, text=True)
        if not ok(r.returncode == 0, f"{name}: starling eval --lookalike" + ("" if r.returncode == 0 else r.stderr)):
            continue
        j = json.loads(r.stdout)
        meta = {}
        for line in subprocess.run([STARLING, "info", model], capture_output=True, text=True).stdout.splitlines():
            if "=" in line and line.strip().startswith("eval."):
                k, v = line.strip().split("=", 1)
                meta[k] = v
        g = [float(meta.get(f"eval.prior_linear_gain{k}", "nan")) for k in ("@20", "@10", "", ".se")]
        rule = "linear" if g[0] > 0 and g[1] > 0 and g[2] > 2 * g[3] else "log"
        ok(j["prior"]["shape"] == meta.get("eval.prior_shape") == rule == SHAPE[name],
           f"{name}: the prior's shape is {j['prior']['shape']} (expected {SHAPE[name]}; the linear prior's gain "
           f"at recall@20 {g[0]:+.4f}, at @10 {g[1]:+.4f}, their mean {g[2]:+.4f} +- {g[3]:.4f}: linear only "
           "beyond 2 standard errors and at neither cut-off a loss)")
        rk = j["rankers"]
        rec = {k: rk[k]["recall"][0]["mean"] for k in ("model", "popularity", "item-knn")}
        note(f"{name}: recall@20 model {rec['model']:.4f}, popularity {rec['popularity']:.4f}, "
             f"item-kNN {rec['item-knn']:.4f}; prior weight {j['prior']['weight']}")
        ok(lift(rec["model"], rec["popularity"]) >= pop_min,
           f"{name}: the model beats popularity {lift(rec['model'], rec['popularity']):.3f}x (at least {pop_min}x)")
        if knn_min is not None:
            ok(lift(rec["model"], rec["item-knn"]) >= knn_min,
               f"{name}: the model beats item-kNN {lift(rec['model'], rec['item-knn']):.3f}x (at least {knn_min}x)")
        else:
            note(f"{name}: item-kNN still wins ({lift(rec['item-knn'], rec['model']):.3f}x the model; "
                 "docs/EVALUATION.md)")
        la, si = j["lookalike"]["rankers"], j["similar"]["rankers"]
        mm, mm_act, mm_co = (la[k]["members_recall"]["mean"] for k in ("model", "most active", "co-occurrence"))
        note(f"{name}: LOOKALIKE members model {mm:.4f}, most active {mm_act:.4f}, co-occurrence {mm_co:.4f}")
        ok(lift(mm, mm_act) >= max(mem_act, 1.3) and lift(mm, mm_co) >= mem_co > 1,
           f"{name}: LOOKALIKE (members) beats the most active users {lift(mm, mm_act):.2f}x (at least "
           f"{max(mem_act, 1.3)}x) and co-occurrence {lift(mm, mm_co):.2f}x (at least {mem_co}x)")
        lm, la_act, la_co = (la[k]["recall_at_held_out"]["mean"] for k in ("model", "most active", "co-occurrence"))
        sm, s_pop, s_cos = (si[k]["overlap_at_10"]["mean"] for k in ("model", "popularity", "factor cosine"))
        note(f"{name}: LOOKALIKE held out model {lm:.4f}, most active {la_act:.4f}, co-occurrence {la_co:.4f}; "
             f"SIMILAR model {sm:.4f}, popularity {s_pop:.4f}, factor cosine {s_cos:.4f}")
        if lal_min is not None:
            ok(lift(lm, la_act) >= lal_min and lm > la_co,
               f"{name}: LOOKALIKE (held out) beats the most active users {lift(lm, la_act):.2f}x (at least "
               f"{lal_min}x) and co-occurrence")
        else:
            note(f"{name}: LOOKALIKE (held out) is {lift(lm, la_act):.3f}x the most active users, not asserted "
                 "(docs/EVALUATION.md, where LOOKALIKE and SIMILAR still fail)")
        if sim_min is not None:
            ok(lift(sm, s_pop) >= sim_min,
               f"{name}: SIMILAR beats popularity {lift(sm, s_pop):.2f}x (at least {sim_min}x)")
        else:
            note(f"{name}: SIMILAR is {lift(sm, s_pop):.3f}x popularity on the known split, not asserted there: its "
                 "truth is the co-engagement within each user's held-out fifth (docs/EVALUATION.md)")
        # SIMILAR against the co-engagement of users the model never saw.
        train, test = quality.make_split(name, "new", quality.read_pairs(name))
        model = os.path.join(d, name + "-new.model")
        r = subprocess.run([STARLING, "train", train, "-o", model, "-q"], capture_output=True, text=True)
        ok(r.returncode == 0, f"{name}: starling train on the new-user split" + ("" if r.returncode == 0 else r.stderr))
        r = subprocess.run([STARLING, "eval", model, test, "-k", "10", "--baselines", "none", "--lookalike",
                            "--validation", "0", "--json", "-q"], capture_output=True, text=True)
        if not ok(r.returncode == 0, f"{name}: starling eval --lookalike on new users" +
                  ("" if r.returncode == 0 else r.stderr)):
            continue
        si = json.loads(r.stdout)["similar"]
        sm, s_pop = (si["rankers"][k]["overlap_at_10"]["mean"] for k in ("model", "popularity"))
        g = si["rankers"]["popularity"]["model_gain"]
        ok(si["truth_cold_users"] > 0 and lift(sm, s_pop) >= SIM_NEW[name] and g["mean"] > g["ci95"],
           f"{name}: SIMILAR against {si['truth_cold_users']} unseen users' co-engagement beats popularity "
           f"{lift(sm, s_pop):.3f}x (at least {SIM_NEW[name]}x; model {sm:.4f}, popularity {s_pop:.4f}, paired gain "
           f"{g['mean']:+.4f} +- {g['ci95']:.4f}, beyond its interval)")
done()
