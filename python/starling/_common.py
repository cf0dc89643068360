"""What every part of the package shares: the error type and the answer type."""


class StarlingError(Exception):
    """A request starling refuses, or a file it cannot read: the message says
    why, in the words the server uses (without Redis's "ERR " prefix)."""


class Result(list):
    """A list of (id, score) tuples, best first (for score(): in the order
    asked), that also says where the answer came from.

    source: "model", "online" (a user changed by EVENT), "prior" (a user the
    model does not know), "foldin", or None where the command has no source
    (AUDIENCE, LOOKALIKE, SIMILAR). total: EXPLAIN's total, else None.
    A Result compares equal to a plain list with the same tuples.
    """

    __slots__ = ("source", "total")

    def __init__(self, pairs=(), source=None, total=None):
        super().__init__(pairs)
        self.source = source
        self.total = total

    def __repr__(self):
        extra = f", source={self.source!r}" if self.source is not None else ""
        if self.total is not None:
            extra += f", total={self.total!r}"
        return f"Result({list.__repr__(self)}{extra})"


def to_bytes(x):
    """An id as the bytes the server and the model file hold: str is UTF-8
    (surrogateescape, so ids read from a file come back byte for byte)."""
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("utf-8", "surrogateescape")
    raise TypeError(f"an id must be str or bytes, not {type(x).__name__}")


def to_str(b):
    return b.decode("utf-8", "surrogateescape")
