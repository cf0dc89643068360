#!/usr/bin/python3
"""The batch commands honour a server's journal (--journal).

The attack: a server with a journal is told to FORGET a user who ranks high
in an audience; `starling audience MODEL --segment S` run over the model
file alone still lists them. With --journal it must not, and `audience`,
`segments` and `score` must answer exactly what the server answers (the same
replay of the journal beside the model), online EVENTs included; `export`,
`quantize` and `shard` must write nothing of a forgotten user. Every answer
is also taken without --journal, to show the test would catch the leak.
Then shards: one journal per shard server, in the order of the shard files.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from serve import Server, make_model  # noqa: E402
from starling import Model as PackageModel  # noqa: E402
from tap import STARLING, done, note, ok, skip_all, starling  # noqa: E402


def Model(path):
    """The package's reader of a model file, with its ids as lists."""
    m = PackageModel(path)
    m.users = [str(u) for u in m.user_ids]
    m.segments = [str(s) for s in m.segment_ids]
    return m


try:
    import numpy as np
    import redis
except ImportError:
    skip_all("needs python3-redis and python3-numpy")


def run(*args):
    return subprocess.run([STARLING, *map(str, args)], capture_output=True, text=True)


def lines(text):
    return [(a, float(b)) for a, b in (line.split("\t") for line in text.splitlines())]


def pairs(reply):
    return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]


def same(a, b, tol=1e-6):
    return len(a) == len(b) and all(x[0] == y[0] and abs(x[1] - y[1]) <= tol * max(1, abs(x[1]))
                                    for x, y in zip(a, b))


def users_of(text):
    return [u for u, _ in lines(text)]


def check_single(d, model, m, journal, srv, c):
    """The attack on one server, and each batch command against it."""
    seg = m.segments[3]
    before = pairs(c.execute_command("AUDIENCE", seg, "COUNT", 300))
    victim, victim2 = before[0][0], before[150][0]
    back = before[40][0]  # forgotten, then engages again: a new history from nothing
    online = [u for u, _ in before[250:]][:20] + m.users[500:510]
    new = ["newcomer-a", "newcomer-b", "newcomer-c"]
    for i, u in enumerate(online):
        c.execute_command("EVENT", u, seg, 30 + i)
        c.execute_command("EVENT", u, m.segments[7], 2, "KIND", "click")
    for u in new:
        for s in (seg, m.segments[3 + len(u)], m.segments[20]):
            c.execute_command("EVENT", u, s, 25)
    for u in (victim, victim2, back):
        c.execute_command("FORGET", u)
    c.execute_command("EVENT", back, m.segments[9], 5)
    n = 3000
    srv_aud = pairs(c.execute_command("AUDIENCE", seg, "COUNT", n))
    plain = run("audience", model, "--segment", seg, "-n", n)
    with_j = run("audience", model, "--segment", seg, "-n", n, "--journal", journal)
    ok(plain.returncode == 0 and victim in users_of(plain.stdout) and victim2 in users_of(plain.stdout),
       f"without --journal the forgotten users are still listed (ranks {users_of(plain.stdout).index(victim) + 1} and "
       f"{users_of(plain.stdout).index(victim2) + 1}): the leak this test guards against")
    got = lines(with_j.stdout) if with_j.returncode == 0 else []
    ok(with_j.returncode == 0 and victim not in users_of(with_j.stdout) and victim2 not in users_of(with_j.stdout),
       f"with --journal neither forgotten user is listed ({with_j.stderr.strip()[:160]})")
    ok(same(got, srv_aud), f"audience --journal equals the server's AUDIENCE COUNT {n} ({len(got)} users)")
    newly = [u for u, _ in got if u in new or u == back]
    ok(len(newly) >= 1 and not same(got, lines(plain.stdout)),
       f"the online EVENTs count: users the model file does not rank there appear ({newly})")
    thr = srv_aud[700][1]
    r_srv = c.execute_command("REACH", seg, "MIN", repr(thr))
    r_cli = run("audience", model, "--segment", seg, "--reach", "--min", repr(thr), "--journal", journal)
    r_plain = run("audience", model, "--segment", seg, "--reach", "--min", repr(thr))
    ok(r_cli.returncode == 0 and int(r_cli.stdout) == r_srv and int(r_plain.stdout) != r_srv,
       f"REACH with --journal equals the server's ({r_srv}); without, {r_plain.stdout.strip()}")
    seeds = [victim] + m.users[1000:1130] + online[:5] + new
    with open(os.path.join(d, "seeds.txt"), "w") as f:
        f.write("\n".join(seeds) + "\n")
    srv_look = pairs(c.execute_command("LOOKALIKE", "COUNT", 400, *seeds))
    look = run("audience", model, "--lookalike", os.path.join(d, "seeds.txt"), "-n", 400, "--journal", journal)
    ok(look.returncode == 0 and same(lines(look.stdout), srv_look, 1e-5),
       "look-alikes with --journal equal the server's LOOKALIKE (a forgotten seed is unknown, online seeds count)")
    ok(victim2 not in users_of(look.stdout), "and list no forgotten user")
    return seg, victim, victim2, back, online, new


def check_while_writing(model, journal, c, seg, gone):
    """Batch reads while the server appends to the journal (bounded)."""
    stop = threading.Event()
    sent = [0]

    def writer():
        w = redis.Redis(host="127.0.0.1", port=c.connection_pool.connection_kwargs["port"])
        while not stop.is_set() and sent[0] < 20000:
            w.execute_command("EVENT", f"writer-{sent[0] % 50}", seg, 1)
            sent[0] += 1

    t = threading.Thread(target=writer)
    t.start()
    runs = []
    try:
        for _ in range(8):
            runs.append(run("audience", model, "--segment", seg, "-n", 1000, "--journal", journal))
    finally:
        stop.set()
        t.join(30)
    ok(sent[0] > 0 and all(r.returncode == 0 and not gone & set(users_of(r.stdout)) for r in runs),
       f"8 runs while the server appended {sent[0]} events: each read the journal, none lists a forgotten user")


def check_user_answers(model, m, journal, c, seg, victim, back, online, new):
    """segments and score against SEGMENTS and SCORE, for every kind of user."""
    for u, kind in ((online[0], "changed online"), (new[0], "new online"), (m.users[3], "untouched"),
                    (back, "forgotten, then back")):
        srv = c.execute_command("SEGMENTS", u, "COUNT", 15)
        cli = run("segments", model, u, "-k", 15, "--journal", journal)
        ok(cli.returncode == 0 and same(lines(cli.stdout), pairs(srv[1]), 1e-5),
           f"segments --journal of a user {kind} equals SEGMENTS ({srv[0]})")
        srv = c.execute_command("SEGMENTS", u, "COUNT", 15, "UNSEEN", "CALIBRATED")
        cli = run("segments", model, u, "-k", 15, "--exclude-seen", "--calibrated", "--journal", journal)
        ok(cli.returncode == 0 and same(lines(cli.stdout), pairs(srv[1]), 1e-4),
           f"... and with --exclude-seen --calibrated equals SEGMENTS UNSEEN CALIBRATED")
        asked = [seg, m.segments[7], m.segments[20]]
        srv = [float(x) for x in c.execute_command("SCORE", u, *asked)[1]]
        cli = run("score", model, u, *asked, "--journal", journal)
        ok(cli.returncode == 0 and np.allclose([s for _, s in lines(cli.stdout)], srv, rtol=1e-5, atol=1e-6),
           f"score --journal of a user {kind} equals SCORE")
    plain = run("segments", model, online[0], "-k", 15)
    ok(plain.returncode == 0 and not same(lines(plain.stdout), pairs(c.execute_command("SEGMENTS", online[0],
                                                                                       "COUNT", 15)[1]), 1e-5),
       "without --journal, segments misses the online events (the comparison above can fail)")
    for cmd in (["segments", model, victim], ["score", model, victim, seg]):
        gone = run(*cmd, "--journal", journal)
        never = run(*cmd[:2], "nobody-ever", *cmd[3:], "--journal", journal)
        leak = run(*cmd)
        ok(gone.returncode == never.returncode == 1 and "unknown user" in gone.stderr and not gone.stdout,
           f"{cmd[0]} --journal of the forgotten user answers as for an unknown user ({gone.stderr.strip()})")
        ok(leak.returncode == 0 and leak.stdout, f"{cmd[0]} without --journal still scores them (the leak)")
    ok(c.execute_command("SEGMENTS", victim)[0] == "prior", "(the server answers them from the prior, as unknown)")
    new_plain = run("segments", model, new[0])
    ok(new_plain.returncode == 1, "a user only the journal knows is unknown without it")


def check_writers(d, model, m, journal, gone):
    """export, quantize and shard write nothing of the forgotten users."""
    victim = sorted(gone)[0]
    out = os.path.join(d, "exp")
    r = run("export", model, out, "--journal", journal)
    users = open(os.path.join(out, "users.txt")).read().split() if r.returncode == 0 else []
    U = np.load(os.path.join(out, "user_factors.npy")) if r.returncode == 0 else None
    hist = open(os.path.join(out, "history.csv")).read() if r.returncode == 0 else ""
    rows = [line.split(",")[0] for line in hist.splitlines()[1:]]
    keep = {u: i for i, u in enumerate(m.users)}
    nnz_kept = sum(int(m.hist_ptr[keep[u] + 1] - m.hist_ptr[keep[u]]) for u in users)
    ok(r.returncode == 0 and not gone & set(users) and len(users) == len(m.users) - len(gone)
       and U.shape[0] == len(users) and not gone & set(rows) and len(rows) == nnz_kept,
       f"export --journal omits the forgotten users' rows, ids and history ({r.stderr.strip()[:120]})")
    ok(U is not None and all(np.array_equal(U[i], m.U[keep[u]]) for i, u in enumerate(users)),
       "and every other row is the model's, in order")
    r = run("export", model, os.path.join(d, "exp_plain"))
    ok(victim in open(os.path.join(d, "exp_plain", "users.txt")).read().split(), "export without it keeps them")
    q = os.path.join(d, "q.model")
    r = run("quantize", model, "-o", q, "--journal", journal)
    qm = Model(q) if r.returncode == 0 else None
    ok(qm is not None and not gone & set(qm.users) and len(qm.users) == len(m.users) - len(gone)
       and qm.header["flags"] & 2 and len(qm.hist_idx) == nnz_kept,
       "quantize --journal writes an int8 model without them (and without their history)")
    r = run("quantize", model, "-o", os.path.join(d, "q2.model"))
    ok(victim in Model(os.path.join(d, "q2.model")).users, "quantize without it keeps them")
    sh = os.path.join(d, "shj")
    r = run("shard", model, "--shards", 3, "-o", sh, "--journal", journal)
    held = [u for i in range(3) for u in Model(os.path.join(sh, f"shard-{i}.model")).users] if r.returncode == 0 else []
    ok(r.returncode == 0 and not gone & set(held) and sorted(held) == sorted(set(m.users) - gone),
       f"shard --journal writes shards without them, every other user in one shard ({len(held)} users)")
    r = run("shard", model, "--shards", 3, "-o", os.path.join(d, "shp"))
    held = [u for i in range(3) for u in Model(os.path.join(d, "shp", f"shard-{i}.model")).users]
    ok(victim in held, "shard without it keeps them")


def check_bad_journals(d, model, journal):
    seg = Model(model).segments[3]
    torn = os.path.join(d, "torn.journal")
    shutil.copy(journal, torn)
    with open(torn, "ab") as f:
        f.write(b"\x11\x22\x33\x44\x40\x00\x00\x00\x01")  # a record being written: its first bytes only
    kept = open(torn, "rb").read()
    a = run("audience", model, "--segment", seg, "-n", 500, "--journal", journal)
    b = run("audience", model, "--segment", seg, "-n", 500, "--journal", torn)
    ok(b.returncode == 0 and b.stdout == a.stdout and "left out" in b.stderr,
       "a record still being written at the end is left out, the rest applied")
    ok(open(torn, "rb").read() == kept, "and the file is left as it was (a server starting would cut the tail off)")
    bad = os.path.join(d, "bad.journal")
    data = bytearray(open(journal, "rb").read())
    data[64 + 20] ^= 0xFF  # inside the first record, with more after it
    open(bad, "wb").write(bytes(data))
    for cmd in (["audience", model, "--segment", seg], ["segments", model, "u000001"],
                ["score", model, "u000001", seg], ["export", model, os.path.join(d, "x")],
                ["quantize", model, "-o", os.path.join(d, "x.model")],
                ["shard", model, "-o", os.path.join(d, "xs")]):
        r = run(*cmd, "--journal", bad)
        ok(r.returncode == 1 and bad in r.stderr and "damaged" in r.stderr and not r.stdout,
           f"{cmd[0]}: a damaged journal is refused, naming the file ({r.stderr.strip()[:150]})")
    r = run("segments", model, "u000001", "--journal", model)
    ok(r.returncode == 1 and "not a starling journal" in r.stderr,
       f"a model given as journal is refused ({r.stderr.strip()[:90]})")
    r = run("audience", model, "--segment", seg, "--journal", os.path.join(d, "missing.journal"))
    ok(r.returncode == 1 and "missing.journal" in r.stderr and not os.path.exists(os.path.join(d, "missing.journal")),
       "a journal that does not exist is an error, and is not created")
    r = run("segments", model, "u000001", "--journal", journal, "--journal", journal)
    ok(r.returncode == 2, "a second --journal for one model is a usage error")


def check_shards(d, model, m):
    """audience over shard files, one journal per shard server."""
    sh = os.path.join(d, "sh")
    starling("shard", model, "--shards", 2, "-o", sh)
    files = [os.path.join(sh, f"shard-{i}.model") for i in range(2)]
    owners = {u: i for i in range(2) for u in Model(files[i]).users}
    journals = [os.path.join(d, f"shard{i}.journal") for i in range(2)]
    servers = [Server(files[i], "--journal", journals[i], "--appendfsync", "always", d=d) for i in range(2)]
    try:
        cs = [redis.Redis(host="127.0.0.1", port=s.port, decode_responses=True) for s in servers]
        seg = m.segments[5]
        n = 400
        top = [u for u, _ in lines(starling("audience", *files, "--segment", seg, "-n", n))]
        gone = [top[0], top[1], top[60]]
        for u in gone:
            cs[owners[u]].execute_command("FORGET", u)
        for u in top[300:320] + m.users[2000:2010]:
            cs[owners[u]].execute_command("EVENT", u, seg, 40)
        cs[0].execute_command("EVENT", "fresh-user", seg, 50)
        cs[1].execute_command("FORGET", top[5])  # sent to both shards: the one that does not hold them too
        cs[0].execute_command("FORGET", top[5])
        gone.append(top[5])
        # Each shard server's answer, merged as the batch merges: by score,
        # then the earlier file, then the shard's own order.
        merged = []
        for i, c in enumerate(cs):
            answer = pairs(c.execute_command("AUDIENCE", seg, "COUNT", n))
            merged += [(-s, i, k, u, s) for k, (u, s) in enumerate(answer)]
        want = [(u, s) for _, _, _, u, s in sorted(merged)[:n]]
        plain = run("audience", *files, "--segment", seg, "-n", n)
        got = run("audience", *files, "--segment", seg, "-n", n, "--journal", journals[0], "--journal", journals[1])
        ok(all(u in users_of(plain.stdout) for u in gone),
           "over shards without journals the forgotten users are listed")
        ok(got.returncode == 0 and not set(gone) & set(users_of(got.stdout)),
           f"over shards with one journal each, none is ({got.stderr.strip()[:200]})")
        ok(same(lines(got.stdout), want), "and the answer is the shard servers' AUDIENCEs merged")
        ok("fresh-user" in users_of(got.stdout), "a user new on one shard is scanned from its journal")
        thr = want[300][1]
        reach = sum(c.execute_command("REACH", seg, "MIN", repr(thr)) for c in cs)
        r = run("audience", *files, "--segment", seg, "--reach", "--min", repr(thr), "-j", journals[0], "-j",
                journals[1])
        ok(r.returncode == 0 and int(r.stdout) == reach, f"reach over shards is the shards' REACH summed ({reach})")
        r = run("audience", *files, "--segment", seg, "--journal", journals[1], "--journal", journals[0])
        ok(r.returncode == 1 and "same order" in r.stderr and not r.stdout,
           f"journals in the wrong order are refused ({r.stderr.strip()[-160:]})")
        r = run("audience", *files, "--segment", seg, "--journal", journals[0], "--journal", journals[0])
        ok(r.returncode == 1 and "the same journal" in r.stderr and not r.stdout,
           f"one journal given for both shards is refused ({r.stderr.strip()[-120:]})")
        r = run("audience", *files, "--segment", seg, "--journal", journals[0])
        ok(r.returncode == 2 and "one journal per model file" in r.stderr, "one journal for two shards: a usage error")
    finally:
        for s in servers:
            s.stop()


def check_help():
    for cmd in ("audience", "segments", "score", "export", "shard", "quantize"):
        h = starling(cmd, "--help")
        ok("--journal FILE" in h, f"`starling {cmd} --help` lists --journal")


with tempfile.TemporaryDirectory() as d:
    model, _ = make_model(d, users=3000, segments=150, events=60000, seed=21, validation=None)
    m = Model(model)
    journal = os.path.join(d, "events.journal")
    srv = Server(model, "--journal", journal, "--appendfsync", "always", d=d)
    try:
        c = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
        seg, victim, victim2, back, online, new = check_single(d, model, m, journal, srv, c)
        check_user_answers(model, m, journal, c, seg, victim, back, online, new)
        check_writers(d, model, m, journal, {victim, victim2, back})
        check_while_writing(model, journal, c, seg, {victim, victim2})
        check_bad_journals(d, model, journal)
        want = pairs(c.execute_command("AUDIENCE", seg, "COUNT", 1000))
    finally:
        srv.stop()
    # A server started afresh on the model and the journal answers the same.
    srv = Server(model, "--journal", journal, d=d)
    try:
        c = redis.Redis(host="127.0.0.1", port=srv.port, decode_responses=True)
        again = pairs(c.execute_command("AUDIENCE", seg, "COUNT", 1000))
        cli = lines(starling("audience", model, "--segment", seg, "-n", 1000, "--journal", journal))
        ok(same(again, want) and same(cli, again), "a server restarted on the model and journal answers the same")
    finally:
        srv.stop()
    note(f"model {len(m.users)} users; forgotten {victim}, {back}")
    check_shards(d, model, m)
    check_help()
done()
