"""starling.Client: a starling server over redis-py, with the answers typed.

Every method sends the command of the same name (docs/PROTOCOL.md) and
returns what starling.Model returns for it: a Result of (id, score) tuples of
str and float, best first. Scores are the server's float32 values: the
shortest decimal the server sends reads back as exactly that float32, which
becomes the Python float (so they equal Model's scores bit for bit).

The *_many methods send one command per item through a redis-py pipeline
(no MULTI: the server answers in order), in rounds of `batch` commands, and
return the answers in order. Errors come back as StarlingError with the
server's message.
"""
import numpy as np
import redis

from ._common import Result, StarlingError, to_bytes, to_str

KEYWORDS = {b"COUNT", b"MIN", b"ONLY", b"EXCLUDE", b"CALIBRATED", b"UNSEEN"}


def _score(b):
    """A score as the server sent it, as the float32 value it denotes."""
    return None if b is None else float(np.float32(float(b)))


def _pairs(flat):
    return [(to_str(flat[i]), _score(flat[i + 1])) for i in range(0, len(flat), 2)]


def _num(v):
    """A number argument: Python's shortest repr reads back exactly."""
    if isinstance(v, (bytes, str)):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    return repr(float(v))


def _count(n):
    return str(n) if isinstance(n, (int, np.integer)) and not isinstance(n, bool) else _num(n)


# ---- commands: (arguments, how to read the reply) ---------------------------

def segments_cmd(user, k=10, min=None, only=None, exclude=None, unseen=False, calibrated=False):
    args = [b"SEGMENTS", to_bytes(user), b"COUNT", _count(k)]
    if min is not None:
        args += [b"MIN", _num(min)]
    for word, segs in ((b"ONLY", only), (b"EXCLUDE", exclude)):
        if segs is None:
            continue
        segs = [to_bytes(s) for s in ([segs] if isinstance(segs, (str, bytes)) else segs)]
        clash = [s for s in segs if s.upper() in KEYWORDS]
        if clash:
            raise StarlingError(f"segment '{to_str(clash[0])}' is named like a SEGMENTS keyword: it cannot be listed "
                                f"in {word.decode()} over the protocol")
        args += [word, *segs]
    if unseen:
        args.append(b"UNSEEN")
    if calibrated:
        args.append(b"CALIBRATED")
    return args, lambda r: Result(_pairs(r[1]), source=to_str(r[0]))


def score_cmd(user, segments, calibrated=False):
    segs = [to_bytes(s) for s in ([segments] if isinstance(segments, (str, bytes)) else segments)]
    args = [b"SCORE", to_bytes(user), *segs]
    pad = 0
    if calibrated:
        args.append(b"CALIBRATED")
    elif segs and segs[-1].upper() == b"CALIBRATED":
        args.append(b"")  # no segment is empty: the real last one is then scored, not taken as the keyword
        pad = 1

    def parse(r):
        scores = r[1][:len(r[1]) - pad]
        return Result([(to_str(s), _score(v)) for s, v in zip(segs, scores)], source=to_str(r[0]))
    return args, parse


def foldin_cmd(engagement, k=10):
    pairs = list(engagement.items() if hasattr(engagement, "items") else engagement)
    args = [b"FOLDIN", b"COUNT", _count(k)]
    for s, w in pairs:
        args += [to_bytes(s), _num(w)]
    return args, lambda r: Result(_pairs(r[1]), source=to_str(r[0]))


def _approx(approx):
    """approx True: APPROX (the server's approximate index); False: EXACT;
    None: the server's default (serve --approx)."""
    return [] if approx is None else [b"APPROX" if approx else b"EXACT"]


def audience_cmd(segment, n, min=None, approx=None):
    args = [b"AUDIENCE", to_bytes(segment), b"COUNT", _count(n)]
    if min is not None:
        args += [b"MIN", _num(min)]
    return args + _approx(approx), lambda r: Result(_pairs(r))


def reach_cmd(segment, min):
    return [b"REACH", to_bytes(segment), b"MIN", _num(min)], int


def reach_curve_cmd(segment, thresholds):
    """REACH seg CURVE t1 t2 ...: one count per threshold, None where the
    server's privacy floor withholds it."""
    return ([b"REACH", to_bytes(segment), b"CURVE", *(_num(t) for t in thresholds)],
            lambda r: [None if c is None else int(c) for c in r])


def lookalike_cmd(seeds, n, approx=None):
    seeds = [seeds] if isinstance(seeds, (str, bytes)) else seeds
    return ([b"LOOKALIKE", *_approx(approx), b"COUNT", _count(n), *(to_bytes(s) for s in seeds)],
            lambda r: Result(_pairs(r)))


def similar_cmd(segment, n=10):
    return [b"SIMILAR", to_bytes(segment), b"COUNT", _count(n)], lambda r: Result(_pairs(r))


def explain_cmd(user, segment, n=10):
    return ([b"EXPLAIN", to_bytes(user), to_bytes(segment), b"COUNT", _count(n)],
            lambda r: Result(_pairs(r[1]), total=_score(r[0])))


def history_cmd(user):
    return [b"HISTORY", to_bytes(user)], lambda r: Result(_pairs(r[1]), source=to_str(r[0]))


NUMBERS = {"final_loss", "alpha", "eps", "lambda", "unobserved_weight", "half_life", "prior_weight", "calib_a",
           "calib_b", "missing_exponent"}


def _card(r):
    card = {}
    for i in range(0, len(r), 2):
        key, v = to_str(r[i]), r[i + 1]
        if isinstance(v, bytes):
            v = to_str(v)
            if key in NUMBERS:
                v = float(v)
        card[key] = v
    return card


def _segment_reply(r):
    out = {}
    for i in range(0, len(r), 2):
        key, v = to_str(r[i]), r[i + 1]
        if isinstance(v, list):
            v = [float(x) for x in v]
        elif isinstance(v, bytes):
            v = to_str(v)
            if key not in ("regularization",):
                v = float(v)
        out[key] = v
    return out


class Client:
    """A connection to one starling server (redis-py underneath).

    Client(host='127.0.0.1', port=6400, password=None, username=None,
    unix_socket_path=None, socket_timeout=30, batch=1000, **redis_options).
    The redis.Redis object is .redis, for anything else."""

    def __init__(self, host="127.0.0.1", port=6400, password=None, username=None, unix_socket_path=None,
                 socket_timeout=30, batch=1000, **redis_options):
        self.redis = redis.Redis(host=host, port=port, password=password, username=username,
                                 unix_socket_path=unix_socket_path, socket_timeout=socket_timeout,
                                 decode_responses=False, **redis_options)
        self.batch = batch

    def __repr__(self):
        kw = self.redis.connection_pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
        return f"starling.Client({where})"

    def close(self):
        self.redis.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def execute(self, args, parse):
        """Sends one command; returns parse(reply)."""
        try:
            return parse(self.redis.execute_command(*args))
        except redis.ResponseError as e:
            raise StarlingError(str(e)) from None

    def execute_many(self, commands):
        """Sends (args, parse) commands pipelined; returns their answers in
        order. Raises the first error once every answer is in."""
        out = []
        for a in range(0, len(commands), self.batch):
            chunk = commands[a:a + self.batch]
            pipe = self.redis.pipeline(transaction=False)
            for args, _ in chunk:
                pipe.execute_command(*args)
            replies = pipe.execute(raise_on_error=False)
            for (_, parse), rep in zip(chunk, replies):
                out.append(StarlingError(str(rep)) if isinstance(rep, redis.ResponseError) else parse(rep))
        for v in out:
            if isinstance(v, StarlingError):
                raise v
        return out

    # ---- the questions (see starling.Model for what each means) ----------

    def segments(self, user, k=10, min=None, only=None, exclude=None, unseen=False, calibrated=False):
        return self.execute(*segments_cmd(user, k, min, only, exclude, unseen, calibrated))

    def score(self, user, segments, calibrated=False):
        return self.execute(*score_cmd(user, segments, calibrated))

    def foldin(self, engagement, k=10):
        return self.execute(*foldin_cmd(engagement, k))

    def audience(self, segment, n, min=None, approx=None):
        return self.execute(*audience_cmd(segment, n, min, approx))

    def reach(self, segment, min):
        return self.execute(*reach_cmd(segment, min))

    def reach_curve(self, segment, thresholds):
        return self.execute(*reach_curve_cmd(segment, thresholds))

    def lookalike(self, seeds, n, approx=None):
        return self.execute(*lookalike_cmd(seeds, n, approx))

    def similar(self, segment, n=10):
        return self.execute(*similar_cmd(segment, n))

    def explain(self, user, segment, n=10):
        return self.execute(*explain_cmd(user, segment, n))

    def history(self, user):
        return self.execute(*history_cmd(user))

    def card(self):
        """MODEL INFO as a dict: ints as int, numbers as float, the rest str."""
        return self.execute([b"MODEL", b"INFO"], _card)

    # ---- online writes -----------------------------------------------------

    def event(self, user, segment, weight, kind=None, ts=None):
        """EVENT: adds engagement; returns once the server has it durable
        (as its --appendfsync says)."""
        args = [b"EVENT", to_bytes(user), to_bytes(segment), _num(weight)]
        if kind is not None:
            args += [b"KIND", to_bytes(kind)]
        if ts is not None:
            args += [b"TS", _num(ts)]
        self.execute(args, lambda r: None)

    def forget(self, user):
        """FORGET: erases the user from every answer, for good."""
        self.execute([b"FORGET", to_bytes(user)], lambda r: None)

    def add_segment(self, segment, users):
        """SEGMENT ADD: a segment the model does not know, from its members
        (or members added to one added before); returns {"members",
        "solved_from", "without_vector"} once durable."""
        return self.execute([b"SEGMENT", b"ADD", to_bytes(segment), *map(to_bytes, users)], _segment_reply)

    def set_segment(self, segment, vector):
        """SEGMENT SET: an added segment's vector, solved elsewhere."""
        self.execute([b"SEGMENT", b"SET", to_bytes(segment), *(repr(float(v)).encode() for v in vector)],
                     lambda r: None)

    def segment_partial(self, segment, users):
        """SEGMENT PARTIAL: this server's part of the segment's system, as a
        dict (gram: k*k floats, rhs: k floats, the counts and settings)."""
        return self.execute([b"SEGMENT", b"PARTIAL", to_bytes(segment), *map(to_bytes, users)], _segment_reply)

    # ---- batches -----------------------------------------------------------

    def segments_many(self, users, k=10, **options):
        """segments() of each user, pipelined."""
        return self.execute_many([segments_cmd(u, k, **options) for u in users])

    def score_many(self, users, segments, calibrated=False):
        """score() of each user against the same segments, pipelined."""
        return self.execute_many([score_cmd(u, segments, calibrated) for u in users])

    def foldin_many(self, engagements, k=10):
        return self.execute_many([foldin_cmd(e, k) for e in engagements])

    def similar_many(self, segments, n=10):
        return self.execute_many([similar_cmd(s, n) for s in segments])

    def explain_many(self, pairs, n=10):
        """explain() of each (user, segment) pair, pipelined."""
        return self.execute_many([explain_cmd(u, s, n) for u, s in pairs])

    def event_many(self, events):
        """EVENT for each (user, segment, weight[, kind[, ts]]), pipelined."""
        cmds = []
        for e in events:
            user, segment, weight, kind, ts = (tuple(e) + (None, None))[:5]
            args = [b"EVENT", to_bytes(user), to_bytes(segment), _num(weight)]
            if kind is not None:
                args += [b"KIND", to_bytes(kind)]
            if ts is not None:
                args += [b"TS", _num(ts)]
            cmds.append((args, lambda r: None))
        self.execute_many(cmds)

