"""The model file (docs/FORMAT.md), mapped read-only: the header, the section
table, and every section as a numpy array over the mapping (no copy).

Loading checks what src/model.c checks, with the same words: the magic and
version, the header checksum, the file size, every section's place and XXH3-64
checksum, that sections do not overlap and that every other byte is zero, the
dimensions, the id tables and the history offsets. A file that fails any of
them raises StarlingError naming the file and what is wrong.
"""
import mmap
import os
import struct

import numpy as np
import xxhash

from ._common import StarlingError, to_bytes, to_str

HEADER = struct.Struct("<8sIIQIIIIQQQQqIIIIIIdddddddddddddddIIddQ")
assert HEADER.size == 256
FIELDS = ("magic version nsections file_bytes users segments factors iterations nnz events seed "
          "fingerprint created threads solver cg_steps confidence regularization flags lambda_ alpha eps "
          "bm25_k1 bm25_b reg_alpha0 reg_nu half_life decay_now final_loss bm25_mean_rowsum init_scale "
          "calib_a calib_b prior_weight iterations_asked missing_weight unobserved_weight missing_exponent "
          "header_checksum").split()
SECTION = struct.Struct("<4sIQQQ")
CHECKSUMMED = 248  # header bytes under the header checksum
VERSION, OLDEST = 4, 1
MAX_SECTIONS = 64
IDMAP_MAX = 2**32 - 2
FLAG_CALIBRATED, FLAG_INT8, FLAG_PRIOR_LINEAR = 1, 2, 4
RETRAIN = "re-train with `starling train EVENTS -o MODEL`"


class IdTable:
    """One id map of the file: offsets, the NUL-terminated bytes, and the hash
    index (slot = XXH3-64(id) mod slots, linear probing; a slot holds index + 1)."""

    def __init__(self, count, offsets, blob, slots):
        self.count = count
        self.offsets = offsets
        self.blob = blob
        self.slots = slots
        self._mask = len(slots) - 1
        self._array = None

    def find(self, ident):
        """The index of an id (str or bytes), or None."""
        b = to_bytes(ident)
        h = xxhash.xxh3_64_intdigest(b) & self._mask
        slots, off, blob = self.slots, self.offsets, self.blob
        for _ in range(len(slots)):
            v = int(slots[h])
            if v == 0:
                return None
            i = v - 1
            if i < self.count:
                a, e = int(off[i]), int(off[i + 1]) - 1
                if e - a == len(b) and blob[a:e].tobytes() == b:
                    return i
            h = (h + 1) & self._mask
        return None

    def name(self, i):
        a, e = int(self.offsets[i]), int(self.offsets[i + 1]) - 1
        return to_str(self.blob[a:e].tobytes())

    def array(self):
        """Every id as a numpy array of str, in index order (built once)."""
        if self._array is None:
            pieces = self.blob.tobytes().split(b"\0")[:-1] if self.count else []
            if len(pieces) != self.count:  # an id holding a NUL byte: go by the offsets
                pieces = [self.blob[int(self.offsets[i]):int(self.offsets[i + 1]) - 1].tobytes()
                          for i in range(self.count)]
            arr = np.empty(self.count, dtype=object)
            arr[:] = [to_str(p) for p in pieces]
            self._array = arr
        return self._array


def _fail(path, why):
    raise StarlingError(f"{path}: {why}")


def _damaged(path, why):
    _fail(path, f"{why}: the file is damaged; {RETRAIN}")


class ModelFile:
    """The arrays of a model file. Attributes: path, header (a dict of the
    header's fields), sections ({tag: (offset, bytes)}), m, n, k, and the
    arrays below, all views of the mapping except where noted."""

    def __init__(self, path, verify=True):
        self.path = os.fspath(path)
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < HEADER.size:
                    _fail(self.path, f"truncated or not a model ({size} bytes; a model has at least {HEADER.size}); "
                          f"{RETRAIN}")
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise StarlingError(f"{self.path}: cannot open the model: {e.strerror}") from None
        self.bytes = np.frombuffer(self._map, dtype=np.uint8)
        self._read_header(size, verify)
        self._read_sections(verify)

    def _read_header(self, size, verify):
        path = self.path
        h = dict(zip(FIELDS, HEADER.unpack_from(self._map, 0)))
        self.header = h
        if h["magic"] != b"STARLING":
            _fail(path, "not a starling model (bad magic number); train one with `starling train EVENTS -o MODEL`")
        if not OLDEST <= h["version"] <= VERSION:
            _fail(path, f"model format version {h['version']}, but this starling reads versions {OLDEST} to "
                  f"{VERSION}; {RETRAIN} using this version, or serve it with the starling that wrote it")
        ns = h["nsections"]
        if ns == 0 or ns > MAX_SECTIONS or HEADER.size + ns * SECTION.size > size:
            _fail(path, f"header is damaged (section count {ns}); {RETRAIN}")
        table = self._map[HEADER.size:HEADER.size + ns * SECTION.size]
        if verify:
            x = xxhash.xxh3_64()
            x.update(self._map[:CHECKSUMMED])
            x.update(table)
            if x.intdigest() != h["header_checksum"]:
                _fail(path, f"header checksum mismatch: the file is damaged; {RETRAIN}")
        if h["flags"] & ~(FLAG_CALIBRATED | FLAG_INT8 | FLAG_PRIOR_LINEAR) or (
                h["flags"] & FLAG_PRIOR_LINEAR and h["version"] < 4):
            _fail(path, f"model flags 0x{h['flags']:x} are not ones format version {h['version']} has; {RETRAIN}")
        if h["file_bytes"] != size:
            _fail(path, f"truncated: the header says {h['file_bytes']} bytes but the file has {size}; {RETRAIN}")
        self.sections = {}
        entries = []
        for i in range(ns):
            tag, _flags, off, nbytes, ck = SECTION.unpack_from(table, i * SECTION.size)
            name = tag.decode("latin-1")
            if off % 64 or off > size or nbytes > size - off:
                _damaged(path, f"section {name} lies outside the file")
            if verify and xxhash.xxh3_64_intdigest(memoryview(self._map)[off:off + nbytes]) != ck:
                _damaged(path, f"section {name} checksum mismatch")
            self.sections.setdefault(name, (off, nbytes))
            entries.append((off, nbytes))
        if verify:
            self._check_padding(entries, HEADER.size + ns * SECTION.size, size)

    def _check_padding(self, entries, pos, size):
        """Sections do not overlap, and every byte outside them is zero."""
        for off, nbytes in sorted(entries, key=lambda e: e[0]) + [(size, 0)]:
            if off < pos:
                _damaged(self.path, "sections overlap")
            nz = np.flatnonzero(self.bytes[pos:off])
            if len(nz):
                _damaged(self.path, f"non-zero padding at byte {pos + int(nz[0])}")
            pos = off + nbytes

    def _section(self, tag, dtype, count=None):
        """A required section as an array of dtype, count elements when given."""
        if tag not in self.sections:
            _damaged(self.path, f"section {tag} is missing")
        off, nbytes = self.sections[tag]
        item = np.dtype(dtype).itemsize
        if count is not None and nbytes != count * item:
            _damaged(self.path, f"section {tag} has {nbytes} bytes, expected {count * item}")
        return np.frombuffer(self._map, dtype=dtype, count=nbytes // item, offset=off)

    def _ids(self, count, o, b, x):
        offsets = self._section(o, "<u8", count + 1)
        blob = self._section(b, np.uint8)
        slots = self._section(x, np.uint8)
        if len(slots) % 4:
            _fail(self.path, f"id index has a bad size; {RETRAIN}")
        slots = self._section(x, "<u4")
        nslots = len(slots)
        if nslots == 0 or nslots & (nslots - 1) or nslots < 2 * count:
            _damaged(self.path, f"id index has a bad size ({nslots} slots for {count} ids)")
        if offsets[0] != 0 or offsets[count] != len(blob):
            _damaged(self.path, "id table does not span its byte blob")
        if count:
            d = np.diff(offsets.astype(np.int64))
            bad = np.flatnonzero(d <= 0)
            if len(bad):
                _damaged(self.path, f"id {int(bad[0])} has a bad offset")
            ends = blob[offsets[1:].astype(np.int64) - 1]
            bad = np.flatnonzero(ends != 0)
            if len(bad):
                _damaged(self.path, f"id {int(bad[0])} is not terminated")
        return IdTable(count, offsets, blob, slots)

    def _read_sections(self, verify):
        h = self.header
        m, n, k = h["users"], h["segments"], h["factors"]
        if k == 0 or k > 1024 or n == 0 or m > IDMAP_MAX or n > IDMAP_MAX:
            _fail(self.path, f"header has impossible dimensions ({m} users, {n} segments, rank {k}); {RETRAIN}")
        self.m, self.n, self.k = m, n, k
        self.int8 = bool(h["flags"] & FLAG_INT8)
        self.calibrated_flag = bool(h["flags"] & FLAG_CALIBRATED)
        self.prior_linear = bool(h["flags"] & FLAG_PRIOR_LINEAR)
        if self.int8:
            self.Uq = self._section("UQ8 ", np.int8, m * k).reshape(m, k)
            self.Uscale = self._section("UQSC", "<f4", m)
            self._U = None
        else:
            self.Uq = self.Uscale = None
            self._U = self._section("UFAC", "<f4", m * k).reshape(m, k)
        self.V = self._section("SFAC", "<f4", n * k).reshape(n, k)
        self.user_table = self._ids(m, "UIDO", "UIDB", "UIDX")
        self.segment_table = self._ids(n, "SIDO", "SIDB", "SIDX")
        self.hist_ptr = self._section("HPTR", "<u8", m + 1)
        self.hist_idx = self._section("HIDX", "<u4", h["nnz"])
        self.hist_val = self._section("HVAL", "<f4", h["nnz"])
        self.popularity = self._section("SPOP", "<f4", n)
        # rho of popularity-weighted missing data (src/als.h), or None: uniform
        self.missing = self._section("SMIS", "<f4", n) if h["missing_weight"] == 1 else None
        self.loss = self._section("LOSS", "<f8", h["iterations"])
        self.meta = bytes(self._section("META", np.uint8)).decode("utf-8", "replace")
        hp = self.hist_ptr
        if hp[0] != 0 or hp[m] != h["nnz"]:
            _fail(self.path, f"history offsets are inconsistent; {RETRAIN}")
        if verify:
            bad = np.flatnonzero((hp[1:] < hp[:-1]) | (hp[1:] > h["nnz"]))
            if len(bad):
                _fail(self.path, f"history offsets are inconsistent at user {int(bad[0])}; {RETRAIN}")
            if len(self.hist_idx):
                bad = np.flatnonzero(self.hist_idx >= n)
                if len(bad):
                    _fail(self.path, f"history names segment {int(self.hist_idx[bad[0]])} of {n}; {RETRAIN}")

    @property
    def U(self):
        """User factors, m x k float32: a view of the file, or for an int8
        model the rows dequantized as starling does ((float) q * scale, in
        float32), computed once (a copy)."""
        if self._U is None:
            self._U = self.Uq.astype(np.float32) * self.Uscale[:, None]
        return self._U

    def user_row(self, u):
        """Model row u's vector (k float32), dequantized for an int8 model."""
        if self.Uq is None:
            return self._U[u]
        return self.Uq[u].astype(np.float32) * self.Uscale[u]

    def meta_value(self, key):
        """The first META line key=value's value, or None."""
        for line in self.meta.split("\n"):
            if line.startswith(key + "="):
                return line[len(key) + 1:]
        return None
