"""An independent reader of starling model files, written from docs/FORMAT.md.

Tests use it to check the format and to compute with a model's factors in
numpy without going through any starling code.
"""
import struct

import numpy as np

HEADER = struct.Struct("<8sIIQIIIIQQQQqIIIIIIdddddddddddddddIIQQQ")
assert HEADER.size == 256
FIELDS = ("magic version nsections file_bytes users segments factors iterations nnz events seed "
          "fingerprint created threads solver cg_steps confidence regularization flags lambda_ alpha eps "
          "bm25_k1 bm25_b reg_alpha0 reg_nu half_life decay_now final_loss bm25_mean_rowsum init_scale "
          "calib_a calib_b prior_weight iterations_asked reserved0 reserved1 reserved2 header_checksum").split()
SECTION = struct.Struct("<4sIQQQ")


class Model:
    def __init__(self, path):
        data = open(path, "rb").read()
        self.header = dict(zip(FIELDS, HEADER.unpack_from(data, 0)))
        h = self.header
        assert h["magic"] == b"STARLING", "bad magic"
        self.sections = {}
        for i in range(h["nsections"]):
            tag, _flags, off, size, _ck = SECTION.unpack_from(data, 256 + 32 * i)
            assert off % 64 == 0
            self.sections[tag.decode()] = data[off:off + size]
        m, n, k = h["users"], h["segments"], h["factors"]
        s = self.sections
        if h["flags"] & 2:  # int8 user factors with a scale per row, dequantized in float32 as starling does
            q = np.frombuffer(s["UQ8 "], dtype=np.int8).reshape(m, k)
            scale = np.frombuffer(s["UQSC"], dtype="<f4")
            self.U = q.astype(np.float32) * scale[:, None]
        else:
            self.U = np.frombuffer(s["UFAC"], dtype="<f4").reshape(m, k)
        self.V = np.frombuffer(s["SFAC"], dtype="<f4").reshape(n, k)
        self.users = self._ids(s["UIDO"], s["UIDB"])
        self.segments = self._ids(s["SIDO"], s["SIDB"])
        self.hist_ptr = np.frombuffer(s["HPTR"], dtype="<u8")
        self.hist_idx = np.frombuffer(s["HIDX"], dtype="<u4")
        self.hist_val = np.frombuffer(s["HVAL"], dtype="<f4")
        self.popularity = np.frombuffer(s["SPOP"], dtype="<f4")
        self.loss = np.frombuffer(s["LOSS"], dtype="<f8")
        self.meta = s["META"].decode(errors="replace")

    @staticmethod
    def _ids(offsets, blob):
        off = [int(v) for v in np.frombuffer(offsets, dtype="<u8")]
        return [blob[off[i]:off[i + 1] - 1].decode("utf-8", "surrogateescape") for i in range(len(off) - 1)]
