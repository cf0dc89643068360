"""An independent reader of starling model files, written from docs/FORMAT.md.

Tests use it to check the format and to compute with a model's factors in
numpy without going through any starling code.
"""
import struct

import numpy as np

HEADER = struct.Struct("<8sIIQIIIIQQQQqIIIIIIdddddddddddddddIIdQQ")
assert HEADER.size == 256
FIELDS = ("magic version nsections file_bytes users segments factors iterations nnz events seed "
          "fingerprint created threads solver cg_steps confidence regularization flags lambda_ alpha eps "
          "bm25_k1 bm25_b reg_alpha0 reg_nu half_life decay_now final_loss bm25_mean_rowsum init_scale "
          "calib_a calib_b prior_weight iterations_asked reserved0 unobserved_weight reserved2 header_checksum").split()
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

    def blend(self):
        """What ranking adds to U V^T for each segment (docs/FORMAT.md): the
        prior weight w times q = log(1 + pop) / log(1 + max pop), in float32
        as starling adds it."""
        top = float(self.popularity.max()) if len(self.popularity) else 0.0
        d = np.log1p(top)
        q = (np.log1p(self.popularity.astype(np.float64)) / d).astype(np.float32) if d > 0 else \
            np.zeros(len(self.popularity), np.float32)
        return np.float32(self.header["prior_weight"]) * q

    def row_lambda(self, nnz):
        """The lambda of a row with nnz nonzeros (docs/TRAINING.md): plain, or
        lambda (nnz + reg_alpha0 cols)^reg_nu for frequency-scaled
        regularisation, cols the other side's count (segments, for a user)."""
        h = self.header
        if h["regularization"] == 1:
            return h["lambda_"] * (nnz + h["reg_alpha0"] * h["segments"]) ** h["reg_nu"]
        return h["lambda_"]

    def unobserved(self):
        """w0, the weight of a pair never observed (1 in files before it)."""
        w0 = self.header["unobserved_weight"]
        return w0 if w0 > 0 else 1.0

    def foldin(self, idx, r):
        """The row the model gives a user with segments idx and raw values r
        (log confidence), solved exactly in float64: (w0 V^T V + V_S^T (C_S -
        w0) V_S + lambda_row I) x = V_S^T C_S 1 (docs/TRAINING.md)."""
        h = self.header
        assert h["confidence"] == 1, "foldin() implements the log confidence scheme"
        V = self.V.astype(np.float64)
        Vs = V[np.asarray(idx, dtype=np.int64)]
        c = 1 + h["alpha"] * np.log1p(np.asarray(r, dtype=np.float64) / h["eps"])
        w0 = self.unobserved()
        A = w0 * V.T @ V + Vs.T @ ((c - w0)[:, None] * Vs) + self.row_lambda(len(Vs)) * np.eye(V.shape[1])
        return A, c, np.linalg.solve(A, Vs.T @ c)

    def scores(self, u):
        """The ranking score of user row u for every segment, as starling ranks."""
        return (self.U[u].astype(np.float32) @ self.V.T) + self.blend()

    def calibrated(self, score):
        """The calibrated probability of a score (the model must be calibrated)."""
        z = self.header["calib_a"] * np.asarray(score, np.float64) + self.header["calib_b"]
        return 1.0 / (1.0 + np.exp(-z))

    @staticmethod
    def _ids(offsets, blob):
        off = [int(v) for v in np.frombuffer(offsets, dtype="<u8")]
        return [blob[off[i]:off[i + 1] - 1].decode("utf-8", "surrogateescape") for i in range(len(off) - 1)]
