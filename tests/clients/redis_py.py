#!/usr/bin/python3
"""The client matrix's redis-py client: redis_py.py PLAN.json [python|hiredis].

Reads the plan tests/test_clients.py writes (host, port, passwords, the
commands, the sorted-set views), runs it with redis-py and prints one JSON
line per step: {"step": "cmd"|"view"|"user", "i": n, "reply": ...} or
{..., "error": "message"}. The second argument picks the reply parser: the
pure-Python one or hiredis's (python3-hiredis), which redis-py uses by default
when it is installed.
"""
import json
import sys

import redis
from redis.connection import HiredisParser, PythonParser


def plain(x):
    """A reply as JSON: bytes become text, tuples lists."""
    if isinstance(x, bytes):
        return x.decode()
    if isinstance(x, (list, tuple)):
        return [plain(e) for e in x]
    if isinstance(x, dict):
        return {plain(k): plain(v) for k, v in x.items()}
    return x


def emit(step, i, call):
    try:
        line = {"step": step, "i": i, "reply": plain(call())}
    except redis.ResponseError as e:
        line = {"step": step, "i": i, "error": str(e)}
    print(json.dumps(line), flush=True)


def view(r, op, args):
    """One sorted-set view through redis-py's own method for it."""
    if op == "zrevrange":
        return r.zrevrange(args[0], int(args[1]), int(args[2]), withscores=True)
    if op == "zscore":
        return r.zscore(args[0], args[1])
    if op == "zcard":
        return r.zcard(args[0])
    if op == "exists":
        return r.exists(args[0])
    if op == "type":
        return r.type(args[0])
    raise ValueError(f"unknown view {op}")


def run(plan, parser_class, out=emit):
    """Runs the plan; out(step, i, call) receives each step."""
    def client(**auth):
        pool = redis.ConnectionPool(host=plan["host"], port=plan["port"], parser_class=parser_class,
                                    socket_timeout=30, **auth)
        return redis.Redis(connection_pool=pool)

    r = client(password=plan["password"])
    # The commands as the server sent them: without redis-py's per-command
    # conversions (PING to True, HELLO to a dict).
    r.response_callbacks.clear()
    for i, cmd in enumerate(plan["commands"]):
        out("cmd", i, lambda cmd=cmd: r.execute_command(*cmd))
    r = client(password=plan["password"])
    for i, (op, *args) in enumerate(plan["views"]):
        out("view", i, lambda op=op, args=args: view(r, op, args))
    u = client(username=plan["user"], password=plan["user_password"])
    for i, cmd in enumerate(plan["user_commands"]):
        out("user", i, lambda cmd=cmd: u.execute_command(*cmd))
    r.close()
    u.close()


if __name__ == "__main__":
    which = sys.argv[2] if len(sys.argv) > 2 else "python"
    run(json.load(open(sys.argv[1])), HiredisParser if which == "hiredis" else PythonParser)
