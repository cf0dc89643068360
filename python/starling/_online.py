"""The users a journal changed, as a server holds them after replaying it at
start (src/overlay.c): the same records skipped, the same values, the same
histories, each user solved once.

A model trained with `starling train --journal` says in its META which
journal (journal_id) it holds up to which record (journal_seq); those
records are skipped. Every other record applies: an EVENT adds its value
(weight x the kind's weight from META kind_weights x time decay towards the
model's decay reference) to the user's history, which starts from the
model's row (or nothing, for a user the model has never seen or who was
forgotten before); a FORGET erases the user. Events on segments the model
does not know, or worth nothing, change nobody. Each changed user hides
their model row; the users still live are then solved by fold-in.
"""
import math
import re

import numpy as np

from ._common import StarlingError

_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|0[xX][0-9a-fA-F.]+([pP][-+]?\d+)?)$")


def parse_number(text):
    """A finite number as src/util.c's st_parse_double takes it, or None."""
    if not _NUMBER.match(text):
        return None
    try:
        v = float.fromhex(text) if "x" in text.lower() else float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def kind_weights(spec):
    """(weights by kind, weight of any other kind) from a --kind-weight spec,
    as st_weighting_parse_kinds reads it; the defaults when it is bad."""
    kinds, default = {}, 1.0
    for tok in (t for t in spec.split(",") if t):
        name, eq, value = tok.partition("=")
        v = parse_number(value) if eq else None
        if not name or v is None or v < 0:
            return {}, 1.0
        if name == "*":
            default = v
        else:
            kinds.setdefault(name, v)
    return kinds, default


def lineage(mf):
    """(journal id, last seq) the model holds records of, from its META
    journal_id and journal_seq; (0, 0) for a model trained without one."""
    jid, jseq = mf.meta_value("journal_id"), mf.meta_value("journal_seq")
    if jid is not None and jseq is not None and re.fullmatch(r"[0-9a-fA-F]{1,16}", jid) and jseq.isdigit():
        return int(jid, 16), int(jseq)
    return 0, 0


class Slot:
    __slots__ = ("user", "model_u", "seg", "r", "live", "forgotten", "pending", "x")

    def __init__(self, user, model_u):
        self.user, self.model_u = user, model_u
        self.seg, self.r = [], []
        self.live = self.forgotten = False
        self.pending = []
        self.x = None


def history_add(seg, r, s, v):
    """Adds value v to segment s of a sorted history: float32 after each
    addition, as overlay.c's history_add."""
    lo, hi = 0, len(seg)
    while lo < hi:
        mid = (lo + hi) // 2
        if seg[mid] < s:
            lo = mid + 1
        else:
            hi = mid
    if lo < len(seg) and seg[lo] == s:
        r[lo] = np.float32(float(r[lo]) + v)
    else:
        seg.insert(lo, s)
        r.insert(lo, np.float32(v))


class Online:
    """The replayed journal: slots by user id, in the order they were made
    (the order scans list the online users in), and the hidden model rows."""

    def __init__(self, mf, journal, solve):
        self.mf = mf
        h = mf.header
        self.kinds, self.default_kind = kind_weights(mf.meta_value("kind_weights") or "")
        self.half_life = h["half_life"] if h["half_life"] > 0 else 0.0
        self.decay_ref = None
        if math.isfinite(h["decay_now"]):
            self.decay_ref = h["decay_now"]
        else:
            ref = mf.meta_value("decay_reference")
            self.decay_ref = parse_number(ref) if ref is not None else None
        self.lineage_id, self.lineage_seq = lineage(mf)
        self.slots = {}
        self.hidden = np.zeros(mf.m, dtype=bool)
        self.replayed = self.skipped = 0
        for rec in journal.records:
            self._replay(journal.id, rec)
        self._solve(solve)

    def value(self, weight, kind, ts):
        """st_overlay_event_value."""
        v = weight * (self.kinds.get(kind, self.default_kind) if kind is not None else self.default_kind)
        if self.half_life > 0 and self.decay_ref is not None:
            age = self.decay_ref - ts
            if age > 0:
                v *= 2.0 ** (-age / self.half_life)
        return v

    def _replay(self, journal_id, rec):
        if self.lineage_id and journal_id == self.lineage_id and rec["seq"] <= self.lineage_seq:
            self.skipped += 1
            return
        self.replayed += 1
        if rec["type"] in ("segment", "segvec"):
            return  # segments added online: the server's (docs/PROTOCOL.md, SEGMENT); users are unchanged
        if rec["type"] == "event":
            seg = self.mf.segment_table.find(rec["segment"])
            v = self.value(rec["weight"], rec["kind"], rec["ts"])
            if seg is None or not v > 0:
                return
        slot = self.slots.get(rec["user"])
        if slot is None:
            slot = Slot(rec["user"], self.mf.user_table.find(rec["user"]))
            self.slots[rec["user"]] = slot
            if slot.model_u is not None:
                self.hidden[slot.model_u] = True
        if rec["type"] == "forget":
            slot.pending = []
            slot.seg, slot.r = [], []
            slot.live, slot.forgotten = False, True
            return
        slot.pending.append((seg, v))

    def _solve(self, solve):
        mf = self.mf
        for slot in self.slots.values():
            if not slot.pending:
                continue
            if slot.live or slot.forgotten:
                seg, r = list(slot.seg), list(slot.r)
            elif slot.model_u is not None:
                a, b = int(mf.hist_ptr[slot.model_u]), int(mf.hist_ptr[slot.model_u + 1])
                seg, r = [int(s) for s in mf.hist_idx[a:b]], [np.float32(v) for v in mf.hist_val[a:b]]
            else:
                seg, r = [], []
            for s, v in slot.pending:
                history_add(seg, r, s, v)
            x = solve(seg, r)
            if x is None:
                raise StarlingError(f"fold-in failed for user '{slot.user[:64]}': the system is not positive definite")
            slot.seg, slot.r, slot.x = seg, r, x
            slot.pending = []
            slot.live = True

    def live_slots(self):
        """The live users in slot order: (ids, their vectors as an n x k array)."""
        live = [s for s in self.slots.values() if s.live]
        X = np.array([s.x for s in live], dtype=np.float32).reshape(len(live), self.mf.k)
        return [s.user for s in live], X
