"""The journal file of `starling serve --journal` (docs/FORMAT.md), read as
src/journal.c reads it: a 64-byte header, then records back to back, each
under a CRC-32. A torn last record (short, failing its CRC, or followed only
by zero bytes) is dropped and counted in torn_bytes; a damaged record with
valid records after it raises StarlingError, as it stops the server.
"""
import os
import struct
import zlib

from ._common import StarlingError, to_str

HEADER = struct.Struct("<8sIIQqQ20sI")
assert HEADER.size == 64
EVENT, FORGET, SEGMENT, SEGVEC = 1, 2, 3, 4
FORGET_FIXED = 8 + 1 + 4
MAX_RECORD = 16 << 20
SCAN_AHEAD = 1 << 20


def _crc(b):
    return zlib.crc32(b) & 0xFFFFFFFF


class Journal:
    """The records of a journal file.

    Attributes: id (the journal's id), created, seq_floor, last_seq,
    records (dicts: seq, type "event" or "forget", user, and for an event
    segment, kind (None for none), weight, ts; type "segment" with segment
    and members, "segvec" with segment and vector; ids as str), end (where the
    valid records end), torn_bytes (bytes of a torn tail dropped)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise StarlingError(f"{self.path}: cannot open the journal: {e.strerror}") from None
        self._read_header(data)
        self.records = []
        self._scan(data)

    def _read_header(self, data):
        path = self.path
        if len(data) < HEADER.size:
            raise StarlingError(f"{path}: not a starling journal (shorter than its 64-byte header)")
        magic, version, hbytes, self.id, self.created, self.seq_floor, _zero, crc = HEADER.unpack_from(data, 0)
        if magic != b"STJRNL01":
            raise StarlingError(f"{path}: not a starling journal (bad magic number)")
        if _crc(data[:60]) != crc:
            raise StarlingError(f"{path}: the journal header is damaged (checksum mismatch)")
        if version != 1 or hbytes != HEADER.size:
            raise StarlingError(f"{path}: journal version {version}, but this package reads version 1")

    @staticmethod
    def _valid_after(data, pos):
        """A whole valid record starts somewhere after pos (within 1 MiB):
        damage at pos is then in the middle of the file, not a torn tail."""
        to = len(data)
        last = to - 8 - FORGET_FIXED
        for q in range(pos + 1, min(last + 1, pos + SCAN_AHEAD)):
            c, n = struct.unpack_from("<II", data, q)
            if n < FORGET_FIXED or n > MAX_RECORD - 8 or 8 + n > to - q:
                continue
            if _crc(data[q + 4:q + 8 + n]) == c:
                return True
        return False

    def _scan(self, data):
        pos, to, last = HEADER.size, len(data), 0
        while to - pos >= 8:
            c, n = struct.unpack_from("<II", data, pos)
            bad = n < FORGET_FIXED or n > MAX_RECORD - 8
            if not bad and 8 + n > to - pos:
                if not self._valid_after(data, pos):
                    break
                bad = True
            if not bad:
                bad = _crc(data[pos + 4:pos + 8 + n]) != c
            if bad:
                if (n >= FORGET_FIXED and pos + 8 + n == to) or not data[pos:].strip(b"\0"):
                    break
                raise StarlingError(f"{self.path}: the record at byte {pos} (after seq {last}) is damaged and "
                                    f"{to - pos} bytes follow it; nothing after it can be trusted")
            rec, why = self._decode(data[pos + 8:pos + 8 + n])
            if why is None and rec["seq"] <= last:
                why = "sequence number does not increase"
            if why is not None:
                raise StarlingError(f"{self.path}: the record at byte {pos} is malformed ({why})")
            last = rec["seq"]
            self.records.append(rec)
            pos += 8 + n
        self.end = pos
        self.torn_bytes = to - pos
        self.last_seq = max(last, self.seq_floor)

    @staticmethod
    def _decode_segment(seq, kind, body):
        """A SEGMENT (segment, members) or SEGVEC (segment, k float32)."""
        p = 9
        if len(body) - p < 4:
            return None, "bad segment id"
        (n,) = struct.unpack_from("<I", body, p)
        if n == 0 or n > len(body) - p - 4:
            return None, "bad segment id"
        seg = to_str(body[p + 4:p + 4 + n])
        p += 4 + n
        ts = None
        if kind == SEGMENT:
            if len(body) - p < 8:
                return None, "bad SEGMENT length"
            (ts,) = struct.unpack_from("<d", body, p)
            p += 8
        if len(body) - p < 4:
            return None, "bad SEGMENT length"
        (count,) = struct.unpack_from("<I", body, p)
        p += 4
        if kind == SEGVEC:
            if count == 0 or len(body) - p != 4 * count:
                return None, "bad SEGVEC length"
            vec = list(struct.unpack_from(f"<{count}f", body, p))
            return {"seq": seq, "type": "segvec", "segment": seg, "vector": vec}, None
        members = []
        while p < len(body):
            if len(body) - p < 4:
                return None, "bad SEGMENT member list"
            (m,) = struct.unpack_from("<I", body, p)
            if m == 0 or m > len(body) - p - 4:
                return None, "bad SEGMENT member list"
            members.append(to_str(body[p + 4:p + 4 + m]))
            p += 4 + m
        if len(members) != count:
            return None, "bad SEGMENT member list"
        return {"seq": seq, "type": "segment", "segment": seg, "ts": ts, "members": members}, None

    @staticmethod
    def _decode(body):
        seq, kind = struct.unpack_from("<QB", body, 0)
        if kind in (SEGMENT, SEGVEC):
            return Journal._decode_segment(seq, kind, body)
        p = 9
        fields = []
        for _ in range(3 if kind == EVENT else 1):
            if len(body) - p < 4:
                return None, "bad id"
            (n,) = struct.unpack_from("<I", body, p)
            if n > len(body) - p - 4:
                return None, "bad id"
            fields.append(body[p + 4:p + 4 + n])
            p += 4 + n
        if not fields[0]:
            return None, "bad user id"
        rec = {"seq": seq, "user": to_str(fields[0])}
        if kind == FORGET:
            rec["type"] = "forget"
            return rec, (None if p == len(body) else "trailing bytes in a FORGET")
        if kind != EVENT:
            return None, "unknown record type (written by a newer starling?)"
        if not fields[1]:
            return None, "bad segment id"
        if len(body) - p != 16:
            return None, "bad EVENT length"
        weight, ts = struct.unpack_from("<dd", body, p)
        if not (weight >= 0 and weight != float("inf")):
            return None, "weight is not a finite number >= 0"
        if ts != ts or ts in (float("inf"), float("-inf")):
            return None, "timestamp is not finite"
        rec.update(type="event", segment=to_str(fields[1]), kind=to_str(fields[2]) or None, weight=weight, ts=ts)
        return rec, None
