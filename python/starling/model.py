"""starling.Model: the questions the server answers, asked of a model file.

Each method computes what the server's command of the same name computes
(src/cmd_*.c, src/score.c), with the same options, the same tie-breaking
and the same errors, for a server started on this file (and this journal)
with the privacy floors off: the model is the caller's own file, so no floor
is applied here. Scores of model users are the server's float32 values bit
for bit (see _kernels.py); fold-in, explanations, SIMILAR and users changed online
(solved from their history) agree to about 1e-6.

Legend: users m, segments n, rank k. A score is U[u] . V[s] + w q[s] (w the
model's prior weight, q the popularity prior); a user the model does not
know (or forgotten by the journal) is answered from the prior q[s].
"""
import math

import numpy as np

from . import _kernels as K
from ._common import Result, StarlingError, to_str
from ._file import FLAG_CALIBRATED, FLAG_INT8, ModelFile
from ._online import Online, lineage
from .journal import Journal

F32 = np.float32
SOLVERS = {0: "cg", 1: "cholesky"}
CONFIDENCES = {0: "linear", 1: "log", 2: "bm25"}
REGULARIZATIONS = {0: "plain", 1: "frequency"}


def _count(n, limit, what="COUNT"):
    """A COUNT argument: a whole number 0..limit, or the server's error."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise StarlingError(f"{what} must be a whole number >= 0")
    if n > limit:
        raise StarlingError(f"COUNT {n} is over the limit of {limit} (--max-count)")
    return int(n)


def _number(v, what):
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise StarlingError(f"{what} is not a valid number") from None
    if not math.isfinite(v):
        raise StarlingError(f"{what} is not a valid number")
    return v


class _User:
    """A user as answers see them (the server's user_view)."""
    __slots__ = ("source", "x", "seg", "r", "place")

    def __init__(self, source, x=None, seg=(), r=(), place=None):
        self.source, self.x, self.seg, self.r, self.place = source, x, seg, r, place

    @property
    def known(self):
        return self.source != "prior"


class Model(ModelFile):
    """A model file, mapped read-only and verified, with the server's answers.

    Model(path, journal=None, verify=True): journal is a journal file (or a
    starling.Journal) whose records apply as the server applies them when it
    starts with it: users erased by FORGET are gone from every answer, users
    changed by EVENT are answered from their re-solved vectors ("online").

    Arrays (views of the file, no copy): V (n x k float32), U (m x k float32;
    for an int8 model a dequantized copy, with Uq and Uscale the file's
    int8 rows and scales), hist_ptr, hist_idx, hist_val (the training
    history, CSR), popularity, loss; user_ids and segment_ids (numpy arrays
    of str, built on first use); prior (q, float32). header: the header's
    fields; meta: the META text.
    """

    def __init__(self, path, journal=None, verify=True):
        super().__init__(path, verify)
        h = self.header
        self.prior = K.prior(self.popularity, self.prior_linear)
        self.prior_weight = F32(h["prior_weight"])
        self._add = (self.prior_weight * self.prior).astype(F32)
        self._G = self._GU = self._rank = None
        self.online = None
        self.journal = None
        self._hidden = None
        self._online_ids, self._online_X, self._online_pos = [], np.empty((0, self.k), F32), {}
        if journal is not None:
            self.journal = journal if isinstance(journal, Journal) else Journal(journal)
            self.online = Online(self, self.journal, self._solve)
            self._hidden = self.online.hidden if self.online.hidden.any() else None
            self._online_ids, self._online_X = self.online.live_slots()
            self._online_pos = {u: i for i, u in enumerate(self._online_ids)}

    # ---- ids and vectors -------------------------------------------------

    @property
    def user_ids(self):
        return self.user_table.array()

    @property
    def segment_ids(self):
        return self.segment_table.array()

    def user_index(self, user):
        """The model row of a user id, or None (through the file's hash index)."""
        return self.user_table.find(user)

    def segment_index(self, segment):
        return self.segment_table.find(segment)

    def user_vector(self, user):
        """The vector answers use for a user (float32, k), or None when the
        user is answered from the prior."""
        return self._user(user).x

    @property
    def G(self):
        """V^T V (float64), computed once."""
        if self._G is None:
            self._G = K.gram(self.V, self.missing)
        return self._G

    @property
    def GU(self):
        """U^T U of the file's user rows (dequantized for int8), summed in
        float64 and kept in float32 as the server keeps it (then float64 for
        the solve): LOOKALIKE's Gram matrix, computed once."""
        if self._GU is None:
            self._GU = K.gram(self.U).astype(F32).astype(np.float64)
        return self._GU

    def _solve(self, seg, r):
        cm1, lam = K.confidences(self.header, self.popularity, self.m, seg, r, self.missing)
        return K.foldin(self.G, self.V, seg, cm1, lam, self.missing)

    def _user(self, user):
        if self.online is not None:
            slot = self.online.slots.get(to_str(user) if isinstance(user, bytes) else user)
            if slot is not None:
                if not slot.live:
                    return _User("prior")
                return _User("online", slot.x, slot.seg, slot.r, self.m + self._online_pos[slot.user])
        u = self.user_table.find(user)
        if u is None:
            return _User("prior")
        a, b = int(self.hist_ptr[u]), int(self.hist_ptr[u + 1])
        return _User("model", self.user_row(u), self.hist_idx[a:b], self.hist_val[a:b], u)

    def _segment(self, segment):
        s = self.segment_table.find(segment)
        if s is None:
            raise StarlingError(f"unknown segment '{to_str(segment) if isinstance(segment, bytes) else segment}'")
        return s

    def _seg_pairs(self, idx, vals):
        names = self.segment_ids
        return [(names[int(i)], float(v)) for i, v in zip(idx, vals)]

    def _user_name(self, pos):
        return self.user_table.name(pos) if pos < self.m else self._online_ids[pos - self.m]

    def _blend(self, x):
        """Every segment's score for vector x: V x + w q, as st_score_blend."""
        return K.dot_rows(self.V, x) + self._add

    def row_scores(self, u):
        """Every segment's score for model row u (float32), as the server ranks."""
        return self._blend(self.user_row(u))

    def blend(self):
        """What ranking adds to U V^T per segment: w q[s] (float32)."""
        return self._add

    def calibrate(self, score):
        """The probability of engagement of a score (the model's calibration)."""
        self._need_calibration()
        return K.calibrate(self.header["calib_a"], self.header["calib_b"], score)

    def _need_calibration(self):
        if not self.header["flags"] & FLAG_CALIBRATED:
            raise StarlingError("CALIBRATED: this model carries no calibration")

    @property
    def prior_rank(self):
        if self._rank is None:
            self._rank = K.topk(self.prior, self.n)[0]
        return self._rank

    # ---- targeting -------------------------------------------------------

    def segments(self, user, k=10, min=None, only=None, exclude=None, unseen=False, calibrated=False):
        """SEGMENTS user [COUNT k] [MIN min] [ONLY ...] [EXCLUDE ...] [UNSEEN]
        [CALIBRATED]: the user's best segments, best first; .source says
        "model", "online" or "prior"."""
        count = _count(k, self.n)
        lo = -math.inf if min is None else _number(min, "MIN")
        if calibrated:
            self._need_calibration()
        u = self._user(user)
        skip = set()
        for s in exclude or ():
            i = self.segment_table.find(s)
            if i is not None:
                skip.add(i)
        if unseen and u.known:
            skip.update(int(s) for s in u.seg)
        if only is not None:
            idx, vals = self._segments_only(u, only, skip, lo, count, calibrated)
        elif u.known:
            sc = self._blend(u.x)
            fmin = -math.inf if calibrated else F32(lo)
            sc[~(sc >= fmin)] = np.nan
            idx, vals = K.topk(sc, count, exclude=sorted(skip))
        else:
            fmin = -math.inf if calibrated else F32(lo)
            idx, vals = [], []
            for s in self.prior_rank:
                if len(idx) == count or self.prior[s] < fmin:
                    break
                if int(s) not in skip:
                    idx.append(int(s))
                    vals.append(self.prior[s])
        if calibrated:
            a, b = self.header["calib_a"], self.header["calib_b"]
            kept = []
            for s, v in zip(idx, vals):
                p = K.calibrate(a, b, v if u.known else self._add[s])
                if p >= lo:
                    kept.append((s, p))
            idx, vals = [s for s, _ in kept], [p for _, p in kept]
        return Result(self._seg_pairs(idx, vals), source=u.source)

    def _segments_only(self, u, only, skip, lo, count, calibrated):
        segs = sorted({i for i in (self.segment_table.find(s) for s in only) if i is not None})
        if u.known:
            sc = K.dot_rows(self.V[segs], u.x) + self._add[segs] if segs else np.empty(0, F32)
        else:
            sc = self.prior[segs].copy()
        for j, s in enumerate(segs):
            if s in skip:
                sc[j] = np.nan
        if not calibrated and not math.isinf(lo):
            sc[~(sc.astype(np.float64) >= lo)] = np.nan
        idx, vals = K.topk(sc, count)
        return [segs[i] for i in idx], vals

    def score(self, user, segments, calibrated=False):
        """SCORE user seg [seg ...] [CALIBRATED]: (segment, score) in the order
        asked; the score is None for a segment the model does not know."""
        if isinstance(segments, (str, bytes)):
            segments = [segments]
        if calibrated:
            self._need_calibration()
        u = self._user(user)
        out = []
        a, b = self.header["calib_a"], self.header["calib_b"]
        for name in segments:
            s = self.segment_table.find(name)
            if s is None:
                v = None
            elif u.known:
                v = K.dot(u.x, self.V[s]) + self._add[s]
                v = K.calibrate(a, b, v) if calibrated else float(v)
            else:
                v = K.calibrate(a, b, self._add[s]) if calibrated else float(self.prior[s])
            out.append((to_str(name) if isinstance(name, bytes) else name, v))
        return Result(out, source=u.source)

    def foldin(self, engagement, k=10):
        """FOLDIN [COUNT k] seg weight ...: the best segments for a user the
        model has never seen, from {segment: engagement} (or pairs); .source
        is "foldin", or "prior" when no known segment has engagement."""
        count = _count(k, self.n)
        pairs = engagement.items() if hasattr(engagement, "items") else engagement
        acc = {}
        pairs = list(pairs)
        if not pairs:
            raise StarlingError("FOLDIN needs segment weight pairs: FOLDIN [COUNT k] seg weight [seg weight ...]")
        for name, w in pairs:
            try:
                wv = float(w)
            except (TypeError, ValueError):
                wv = math.nan
            if not (wv >= 0) or math.isinf(wv):
                raise StarlingError(f"weight '{str(w)[:32]}' of segment '{str(name)[:64]}' is not a number >= 0")
            s = self.segment_table.find(name)
            if s is not None:
                acc[s] = F32(acc[s] + F32(wv)) if s in acc else F32(wv)
        seg = sorted(s for s, r in acc.items() if r > 0)
        if not seg:
            idx, vals = K.topk(self.prior, count)
            return Result(self._seg_pairs(idx, vals), source="prior")
        x = self._solve(seg, [acc[s] for s in seg])
        if x is None:
            raise StarlingError("fold-in failed: the system is not positive definite")
        idx, vals = K.topk(self._blend(x), count)
        return Result(self._seg_pairs(idx, vals), source="foldin")

    def explain(self, user, segment, n=10):
        """EXPLAIN user seg [COUNT n]: the past segments that contribute most
        to the user's fold-in score of segment, best first; .total is the
        contribution of the whole history."""
        count = _count(n, self.n)
        u = self._user(user)
        if not u.known:
            raise StarlingError(f"unknown user '{str(user)[:128]}': no history to explain (its scores come from "
                                f"the prior)")
        s = self._segment(segment)
        seg = [int(i) for i in u.seg]
        cm1, lam = K.confidences(self.header, self.popularity, self.m, seg, u.r, self.missing)
        contrib = K.explain(self.G, self.V, seg, cm1, lam, s, self.missing)
        if contrib is None:
            raise StarlingError("explanation failed: the system is not positive definite")
        total = 0.0
        for c in contrib:
            total += float(c)
        idx, vals = K.topk(contrib, count)
        return Result(self._seg_pairs([seg[i] for i in idx], vals), total=float(F32(total)))

    def history(self, user):
        """HISTORY user: the engagement behind the user's vector, by segment
        (the model's training history plus what the journal added); .source
        is "model", "online" or "none"."""
        u = self._user(user)
        if not u.known:
            return Result([], source="none")
        return Result(self._seg_pairs(u.seg, u.r), source=u.source)

    def similar(self, segment, n=10):
        """SIMILAR seg COUNT n: the segments a user whose only engagement is
        segment (at the typical value of a pair: eps for the log scheme,
        else 1) would be shown, ranked as segments() ranks; segment itself
        left out."""
        s = self._segment(segment)
        count = _count(n, self.n)
        h = self.header
        r = F32(h["eps"]) if h["confidence"] == K.CONF_LOG and h["eps"] > 0 else F32(1)
        x = self._solve([s], [r])
        if x is None:
            return Result([])
        idx, vals = K.topk(self._blend(x), count, exclude=[s])
        return Result(self._seg_pairs(idx, vals))

    # ---- scans over every user -------------------------------------------

    def _scan(self, x, add=None):
        """Every user's score against x: the model's rows (NaN where the
        journal changed or erased the user), then the online users."""
        sc = K.dot_rows(self.Uq if self.int8 else self._U, x, self.Uscale if self.int8 else None)
        if add is not None:
            sc += add
        if self._hidden is not None:
            sc[self._hidden] = np.nan
        if len(self._online_ids):
            on = K.dot_rows(self._online_X, x)
            if add is not None:
                on += add
            sc = np.concatenate([sc, on])
        return sc

    def _segment_users(self, s):
        return self._scan(self.V[s], self._add[s])

    def audience(self, segment, n, min=None):
        """AUDIENCE seg COUNT n [MIN min]: the best users for a segment."""
        s = self._segment(segment)
        count = _count(n, 2**32 - 1)
        sc = self._segment_users(s)
        if min is not None:
            sc[~(sc >= F32(_number(min, "MIN")))] = np.nan
        idx, vals = K.topk(sc, count)
        return Result([(self._user_name(int(i)), float(v)) for i, v in zip(idx, vals)])

    def reach(self, segment, min):
        """REACH seg MIN min: how many users score at least min."""
        s = self._segment(segment)
        lo = _number(min, "MIN")
        sc = self._segment_users(s)
        return int(np.count_nonzero(sc >= F32(lo)))

    def reach_curve(self, segment, thresholds):
        """REACH seg CURVE t1 t2 ...: the count at each threshold, in the
        order given, from one pass (no privacy floor: the file is the
        owner's)."""
        s = self._segment(segment)
        t = np.array([F32(_number(x, "CURVE")) for x in thresholds], dtype=F32)
        sc = np.sort(self._segment_users(s))
        return [int(len(sc) - np.searchsorted(sc, x, side="left")) for x in t]

    def lookalike(self, seeds, n):
        """LOOKALIKE COUNT n user ...: users scored against the seeds folded
        in as a segment (K.lookalike_query: one solve against U^T U, the
        centroid if it fails), seeds excluded."""
        count = _count(n, 2**32 - 1)
        if isinstance(seeds, (str, bytes)):
            seeds = [seeds]
        seeds = list(seeds)
        found = {}
        for sd in seeds:
            u = self._user(sd)
            if u.known and u.place not in found:
                found[u.place] = u.x
        if not found:
            raise StarlingError(f"none of the {len(seeds)} seed users is in the model")
        places = sorted(found)  # the order of the scan, as the server gathers them
        rows = np.array([found[p] for p in places], dtype=F32).reshape(len(places), self.k)
        v = K.lookalike_query(self.header, self.m, self.GU, rows)
        sc = self._scan(v)
        sc[places] = np.nan
        idx, vals = K.topk(sc, count)
        return Result([(self._user_name(int(i)), float(v)) for i, v in zip(idx, vals)])

    # ---- batches and the card --------------------------------------------

    def segments_many(self, users, k=10, **options):
        """segments() of each user, in order."""
        return [self.segments(u, k, **options) for u in users]

    def score_many(self, users, segments, calibrated=False):
        """score() of each user against the same segments, in order."""
        return [self.score(u, segments, calibrated) for u in users]

    def foldin_many(self, engagements, k=10):
        return [self.foldin(e, k) for e in engagements]

    def card(self):
        """The model card: the fields of MODEL INFO (without the server's
        path, generation and load time), ints as int, numbers as float, META
        lines as "meta.<key>" strings."""
        h = self.header
        jid, jseq = lineage(self)
        c = {"path": self.path, "users": self.m, "segments": self.n, "factors": self.k, "nnz": h["nnz"],
             "events": h["events"], "iterations": h["iterations"], "final_loss": h["final_loss"],
             "fingerprint": f"{h['fingerprint']:016x}", "created": h["created"],
             "calibrated": int(bool(h["flags"] & FLAG_CALIBRATED)), "file_bytes": h["file_bytes"],
             "journal_id": f"{jid:016x}" if jid else "", "journal_seq": jseq,
             "iterations_asked": h["iterations_asked"],
             "user_factors": "int8" if h["flags"] & FLAG_INT8 else "float32",
             "solver": SOLVERS.get(h["solver"], "cg"), "cg_steps": h["cg_steps"],
             "confidence": CONFIDENCES.get(h["confidence"], "?"), "alpha": h["alpha"], "eps": h["eps"],
             "lambda": h["lambda_"], "regularization": REGULARIZATIONS.get(h["regularization"], "plain"),
             "unobserved_weight": h["unobserved_weight"] if h["unobserved_weight"] > 0 else 1.0,
             "missing_weight": "popularity" if h["missing_weight"] == 1 else "uniform",
             "missing_exponent": h["missing_exponent"],
             "seed": h["seed"], "half_life": h["half_life"], "prior_weight": h["prior_weight"],
             "prior_shape": "linear" if self.prior_linear else "log", "threads": h["threads"]}
        if h["flags"] & FLAG_CALIBRATED:
            c["calib_a"], c["calib_b"] = h["calib_a"], h["calib_b"]
        lines = self.meta.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for line in lines:
            key, _, value = line.partition("=")
            c["meta." + key[:150]] = value
        return c
