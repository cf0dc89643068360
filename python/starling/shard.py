"""starling.ShardedClient: user-sharded starling servers, routed as twemproxy
routes them, with the audience questions gathered from every shard.

A proxy forwards only the commands it knows, by their key; starling's shards
(`starling shard`) hold each user on the server twemproxy picks for the key
u:<user>. This client reads the same nutcracker.yml and makes the same
choice itself (src/shard.c does it in C; both follow twemproxy 0.5's hashkit,
and tests/test_python_shard.py checks every choice against a real
nutcracker), so the targeting commands go straight to the user's shard:
SEGMENTS, SCORE, EXPLAIN, HISTORY, EVENT, FORGET. FOLDIN and SIMILAR need no
user: any shard answers them (every shard holds every segment). AUDIENCE and
REACH go to every shard at once and are merged: the best n of the shards'
best n, and the sum of the counts.

Not here: LOOKALIKE over more than one shard. Its query is solved from the
seeds' vectors and U^T U of every user, which live on several shards, and the protocol gives no
command that returns a vector or scores against a given one, so no merge of
the shards' replies equals the unsharded answer; it raises StarlingError.
"""
import hashlib
import math
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import client as C
from ._common import Result, StarlingError, to_bytes

M32, M64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
POINTS_PER_SERVER = 160
KETAMA_PORT = 11211


def _sext(b):
    """A key byte as twemproxy reads it: a signed char, widened."""
    return b - 256 if b >= 128 else b


def _fnv1a_64(key):  # twemproxy's fnv1a_64 is 32 bits wide
    x = 0xcbf29ce484222325 & M32
    for b in key:
        x = ((x ^ (_sext(b) & M32)) * (0x100000001b3 & M32)) & M32
    return x


def _fnv1_64(key):
    x = 0xcbf29ce484222325
    for b in key:
        x = ((x * 0x100000001b3) & M64) ^ (_sext(b) & M64)
    return x & M32


def _fnv1a_32(key):
    x = 2166136261
    for b in key:
        x = ((x ^ (_sext(b) & M32)) * 16777619) & M32
    return x


def _fnv1_32(key):
    x = 2166136261
    for b in key:
        x = ((x * 16777619) & M32) ^ (_sext(b) & M32)
    return x


def _md5(key):
    return int.from_bytes(hashlib.md5(key).digest()[:4], "little")


def _one_at_a_time(key):
    x = 0
    for b in key:
        x = (x + (_sext(b) & M32)) & M32
        x = (x + (x << 10)) & M32
        x ^= x >> 6
    x = (x + (x << 3)) & M32
    x ^= x >> 11
    return (x + (x << 15)) & M32


HASHES = {"fnv1a_64": _fnv1a_64, "fnv1_64": _fnv1_64, "fnv1a_32": _fnv1a_32, "fnv1_32": _fnv1_32, "md5": _md5,
          "crc32a": lambda k: zlib.crc32(k) & M32, "one_at_a_time": _one_at_a_time}


def _name_order(name):
    """twemproxy sorts a pool's servers by name: the shorter first, then by bytes."""
    b = name.encode()
    return (len(b), b)


class Router:
    """twemproxy's choice of server for a key.

    Router(servers, hash="fnv1a_64", distribution="ketama", hash_tag=""):
    servers is a list of (name, weight) as in the yml (name: the server's
    name, or host:port, or host when the port is 11211). route(key) is the
    index in that list of the server twemproxy sends key to."""

    def __init__(self, servers, hash="fnv1a_64", distribution="ketama", hash_tag=""):
        if hash not in HASHES:
            raise StarlingError(f"hash '{hash}' is not supported (supported: {', '.join(HASHES)})")
        if distribution not in ("ketama", "modula"):
            raise StarlingError(f"distribution '{distribution}' is not supported: ketama or modula (random "
                                f"routes no key to a fixed shard)")
        if hash_tag and len(hash_tag) != 2:
            raise StarlingError(f"hash_tag '{hash_tag}' must be two characters")
        if not servers:
            raise StarlingError("the pool has no servers")
        self.hash = HASHES[hash]
        self.tag = hash_tag.encode() if hash_tag else b""
        self.n = len(servers)
        order = sorted(range(self.n), key=lambda i: _name_order(servers[i][0]))
        if distribution == "modula":
            self.modula = [i for i in order for _ in range(servers[i][1])]
            self.values = None
        else:
            self.modula = None
            self._ketama(servers, order)

    def _ketama(self, servers, order):
        total = np.float32(sum(w for _, w in servers))
        points = []
        for i in order:
            name, weight = servers[i]
            # Points per server, in float as twemproxy computes them.
            pct = np.float32(weight) / total
            scaled = np.float32(np.float32(pct * np.float32(POINTS_PER_SERVER)) / np.float32(4)) * np.float32(self.n)
            per = int(math.floor(np.float32(float(scaled) + 0.0000000001))) * 4
            for p in range(per // 4):
                d = hashlib.md5(f"{name}-{p}".encode()).digest()
                for x in range(4):
                    points.append((int.from_bytes(d[4 * x:4 * x + 4], "little"), i))
        points.sort(key=lambda pt: pt[0])  # stable, as glibc's qsort (a merge sort) leaves equal values
        self.values = np.array([v for v, _ in points], dtype=np.uint64)
        self.index = [i for _, i in points]

    def key_of(self, key):
        """The part of key that is hashed (hash_tag applied)."""
        if self.tag:
            a = key.find(self.tag[:1])
            if a >= 0:
                b = key.find(self.tag[1:], a + 1)
                if b > a + 1:
                    return key[a + 1:b]
        return key

    def route(self, key):
        h = self.hash(self.key_of(to_bytes(key)))
        if self.modula is not None:
            return self.modula[h % len(self.modula)]
        j = int(np.searchsorted(self.values, h, side="left"))
        return self.index[0 if j == len(self.index) else j]

    def shard_of_user(self, user):
        return self.route(b"u:" + to_bytes(user))


def _unquote(v):
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    return v


def _strip_comment(line):
    quote = None
    for i, ch in enumerate(line):
        if ch in "\"'":
            quote = None if quote == ch else (quote or ch)
        elif ch == "#" and quote is None and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def read_nutcracker(path, pool=None):
    """The pools of a nutcracker.yml, as {name: {key: value, "servers": [...]}}
    (the subset of YAML twemproxy's configurations use), and the pool asked
    for (the first one by default)."""
    pools, cur, key = {}, None, None
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = _strip_comment(raw.rstrip("\n")).rstrip()
            if not line.strip():
                continue
            body = line.strip()
            if not line[0].isspace():
                if not body.endswith(":"):
                    raise StarlingError(f"{path}:{lineno}: expected a pool name followed by ':'")
                cur = pools.setdefault(_unquote(body[:-1]), {"servers": []})
                continue
            if cur is None:
                raise StarlingError(f"{path}:{lineno}: a setting outside any pool")
            if body.startswith("-"):
                if key != "servers":
                    raise StarlingError(f"{path}:{lineno}: a list item outside 'servers:'")
                cur["servers"].append(_unquote(body[1:]))
                continue
            k, sep, v = body.partition(":")
            if not sep:
                raise StarlingError(f"{path}:{lineno}: expected 'key: value'")
            key = k.strip()
            if key != "servers":
                cur[key] = _unquote(v)
    if not pools:
        raise StarlingError(f"{path}: no pool")
    name = pool if pool is not None else next(iter(pools))
    if name not in pools:
        raise StarlingError(f"{path}: no pool named '{name}' (pools: {', '.join(pools)})")
    return name, pools[name]


def parse_server(spec):
    """'host:port:weight [name]' or '/unix/socket:weight [name]' as
    (address, port or None, weight, name) with twemproxy's default name."""
    text, _, name = spec.strip().partition(" ")
    name = name.strip()
    parts = text.rsplit(":", 2 if not text.startswith("/") else 1)
    try:
        if text.startswith("/"):
            addr, port, weight = parts[0], None, int(parts[1])
        else:
            addr, port, weight = parts[0], int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        raise StarlingError(f"server '{spec}' is not 'host:port:weight [name]'") from None
    if weight <= 0:
        raise StarlingError(f"server '{spec}' has a weight that is not a positive number")
    if not name:
        name = addr if port in (KETAMA_PORT, None) else f"{addr}:{port}"
    return addr, port, weight, name


class ShardedClient:
    """Clients of every shard of a nutcracker.yml pool, and the routing.

    ShardedClient(nutcracker_yml, pool=None, password=None, min_audience=0,
    **client_options): one starling.Client per server of the pool, in the
    order of the file (.shards); client_options go to each (username,
    socket_timeout, batch, ...). min_audience applies the privacy floor to
    the merged AUDIENCE and REACH, as one server started with --min-audience
    applies it (each shard also applies its own floor to its own part).
    """

    def __init__(self, nutcracker_yml, pool=None, password=None, min_audience=0, **client_options):
        self.pool, cfg = read_nutcracker(nutcracker_yml, pool)
        servers = [parse_server(s) for s in cfg["servers"]]
        self.router = Router([(name, w) for _, _, w, name in servers], cfg.get("hash", "fnv1a_64"),
                             cfg.get("distribution", "ketama"), cfg.get("hash_tag", ""))
        self.names = [name for *_, name in servers]
        self.shards = [C.Client(unix_socket_path=addr, password=password, **client_options) if port is None else
                       C.Client(host=addr, port=port, password=password, **client_options)
                       for addr, port, _, _ in servers]
        self.min_audience = min_audience
        self._pool = ThreadPoolExecutor(max_workers=len(self.shards))

    def __repr__(self):
        return f"starling.ShardedClient({self.pool}: {len(self.shards)} shards)"

    def close(self):
        self._pool.shutdown(wait=True)
        for s in self.shards:
            s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def shard_of(self, user):
        """The index in .shards of the server that holds user."""
        return self.router.shard_of_user(user)

    def _user(self, user):
        return self.shards[self.shard_of(user)]

    def _everywhere(self, cmd):
        """cmd (args, parse) on every shard at once; the answers by shard."""
        return list(self._pool.map(lambda s: s.execute(*cmd), self.shards))

    # ---- per user, routed ----------------------------------------------------

    def segments(self, user, k=10, min=None, only=None, exclude=None, unseen=False, calibrated=False):
        return self._user(user).segments(user, k, min, only, exclude, unseen, calibrated)

    def score(self, user, segments, calibrated=False):
        return self._user(user).score(user, segments, calibrated)

    def explain(self, user, segment, n=10):
        return self._user(user).explain(user, segment, n)

    def history(self, user):
        return self._user(user).history(user)

    def event(self, user, segment, weight, kind=None, ts=None):
        return self._user(user).event(user, segment, weight, kind, ts)

    def forget(self, user):
        return self._user(user).forget(user)

    # ---- any shard --------------------------------------------------------------

    def foldin(self, engagement, k=10):
        return self.shards[0].foldin(engagement, k)

    def similar(self, segment, n=10):
        return self.shards[0].similar(segment, n)

    def card(self):
        """The first shard's MODEL INFO, with users summed over every shard
        and "shards" the count."""
        cards = self._everywhere(([b"MODEL", b"INFO"], C._card))
        card = dict(cards[0])
        card["users"] = sum(c["users"] for c in cards)
        card["shards"] = len(cards)
        return card

    # ---- every shard, merged -------------------------------------------------------

    def add_segment(self, segment, users):
        """A segment from a list of users over every shard (docs/SCALING.md):
        SEGMENT PARTIAL on each, the summed system solved here, SEGMENT SET of
        the vector on each. Returns {"members", "solved_from", "vector"}."""
        users = list(users)
        parts = self._everywhere(([b"SEGMENT", b"PARTIAL", to_bytes(segment), *map(to_bytes, users)],
                                  C._segment_reply))
        k = int(parts[0]["k"])
        A = sum(np.asarray(p["gram"], dtype=np.float64).reshape(k, k) for p in parts)
        b = sum(np.asarray(p["rhs"], dtype=np.float64) for p in parts)
        used = sum(int(p["used"]) for p in parts)
        if used == 0:
            raise StarlingError(f"none of the {len(users)} users listed is known to any shard: segment "
                                f"'{segment}' has no vector to solve")
        p0 = parts[0]
        lam = p0["lambda"] / p0["unobserved"]
        if p0["regularization"] == "frequency":
            lam *= (used + p0["reg_alpha0"] * sum(int(p["users"]) for p in parts)) ** p0["reg_nu"]
        y = np.linalg.solve(A + lam * np.eye(k), b).astype(np.float32)
        args = [b"SEGMENT", b"SET", to_bytes(segment), *(repr(float(v)).encode() for v in y)]
        self._everywhere((args, lambda r: None))
        return {"members": int(p0["members"]), "solved_from": used, "vector": y}

    def _floor(self, users):
        if users < self.min_audience:
            raise StarlingError(f"audience below the privacy floor of {self.min_audience} users (--min-audience): "
                                f"fewer users match")

    def reach(self, segment, min):
        total = sum(self._everywhere(C.reach_cmd(segment, min)))
        self._floor(total)
        return total

    def audience(self, segment, n, min=None):
        """The best n users over every shard: each shard's best n, merged by
        score (equal scores on different shards: the earlier shard first)."""
        parts = self._everywhere(C.audience_cmd(segment, n, min))
        if self.min_audience:
            lowest = -3.4028234663852886e38 if min is None else min
            self._floor(sum(self._everywhere(C.reach_cmd(segment, lowest))))
        merged = [(-v, i, r, u) for i, part in enumerate(parts) for r, (u, v) in enumerate(part)]
        merged.sort(key=lambda t: t[:3])
        return Result([(u, -v) for v, _, _, u in merged[:n]])

    def lookalike(self, seeds, n):
        if len(self.shards) == 1:
            return self.shards[0].lookalike(seeds, n)
        raise StarlingError("LOOKALIKE over several shards: the seeds' query needs their vectors from every "
                            "shard, which the protocol does not give; run `starling audience SHARD.model ... "
                            "--lookalike` over the shard files, or starling.Model over the unsharded model")

    # ---- batches ------------------------------------------------------------------------

    def _many(self, items, user_of, make):
        """make(item) -> command for each item, pipelined to the shard of
        user_of(item), every shard at once; the answers in the order of items."""
        items = list(items)
        groups = {}
        for pos, it in enumerate(items):
            groups.setdefault(self.shard_of(user_of(it)), []).append(pos)
        out = [None] * len(items)

        def run(group):
            shard, positions = group
            return positions, self.shards[shard].execute_many([make(items[p]) for p in positions])
        for positions, answers in self._pool.map(run, groups.items()):
            for p, a in zip(positions, answers):
                out[p] = a
        return out

    def segments_many(self, users, k=10, **options):
        return self._many(users, lambda u: u, lambda u: C.segments_cmd(u, k, **options))

    def score_many(self, users, segments, calibrated=False):
        return self._many(users, lambda u: u, lambda u: C.score_cmd(u, segments, calibrated))

    def explain_many(self, pairs, n=10):
        return self._many(pairs, lambda p: p[0], lambda p: C.explain_cmd(p[0], p[1], n))

    def foldin_many(self, engagements, k=10):
        return self.shards[0].foldin_many(engagements, k)

    def similar_many(self, segments, n=10):
        return self.shards[0].similar_many(segments, n)
