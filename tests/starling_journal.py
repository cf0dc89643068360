"""An independent reader of starling journal files, written from docs/FORMAT.md.

Tests use it to look inside a journal without going through starling's own
reader: which records a compaction kept, what a torn tail looks like.
"""
import struct
import zlib

HEADER = struct.Struct("<8sIIQqQ20sI")
assert HEADER.size == 64
EVENT, FORGET = 1, 2


class Journal:
    def __init__(self, path):
        data = open(path, "rb").read()
        magic, version, hbytes, self.id, self.created, self.seq_floor, _zero, crc = HEADER.unpack_from(data, 0)
        assert magic == b"STJRNL01" and version == 1 and hbytes == 64, "not a journal"
        assert zlib.crc32(data[:60]) == crc, "bad header checksum"
        self.records = []
        pos = 64
        while pos + 8 <= len(data):
            crc, length = struct.unpack_from("<II", data, pos)
            if pos + 8 + length > len(data) or zlib.crc32(data[pos + 4:pos + 8 + length]) != crc:
                break
            body = data[pos + 8:pos + 8 + length]
            seq, kind = struct.unpack_from("<QB", body, 0)
            p = 9
            fields = []
            for _ in range(3 if kind == EVENT else 1):
                (n,) = struct.unpack_from("<I", body, p)
                fields.append(body[p + 4:p + 4 + n].decode("utf-8", "surrogateescape"))
                p += 4 + n
            rec = {"seq": seq, "type": "event" if kind == EVENT else "forget", "user": fields[0]}
            if kind == EVENT:
                rec["segment"], rec["kind"] = fields[1], fields[2] or None
                rec["weight"], rec["ts"] = struct.unpack_from("<dd", body, p)
            self.records.append(rec)
            pos += 8 + length
        self.end = pos
        self.torn_bytes = len(data) - pos
