#!/usr/bin/env python3
"""The rooms phases of `make bench` (python3 standard library only): data, Redis loads, the
operator-view watcher and the checks of the draw and the admission ticks.

Room lines are written straight into the store, like the main line (bench/sql/rooms.sql for
PostgreSQL, `load` below for Redis, in the layout of crates/adapters-redis that bench/redisq.py
describes): token n of room R has the seq n (1.. in each room's own line, in list order: a draw
derives each claimed token's seq from its place in the list, checking the first and the last),
the value rtok(R, n) = R "." md5(R "t" n) || first half of md5(R "u" n) || n (8 bytes
big-endian), in hex: 24 random-looking bytes, so a draw that sorts values byte-wise sorts them
like real ones, and the seq that names the token's record in Redis; and the user
uid(5000000 + n). A loaded line is not drawn yet, so it has no position table ({ns}:drawn); the
draw writes it and keeps these seqs.

Subcommands (PORT is a redis-server or the concert server, as named):
  load REDIS_PORT PREFIX ROOM:COUNT:AGO_SECS ...
        WAITING lines in Redis (each into an empty namespace), issued AGO_SECS ago; the line's
        cursor as the first issue makes it (epoch, layout, imax/iback) and nothing admitted
  check-redis REDIS_PORT PREFIX ROOM...
        bench/redisq.py's line invariants (--full) for each room's line in Redis
  seen-redis REDIS_PORT PREFIX ROOM COUNT EVERY
        marks tokens n % EVERY == 0 of ROOM still stored WAITING seen now (the record's `seen`,
        moved forward only, as note_seen does)
  data DIR SPEC...   the wrk data files: NAME=ROOM:FIRST:LAST:STEP[,ROOM:...] (interleaved)
  create URL ADMIN JSON...           POST /admin/rooms for each body; exits 1 on a refusal
  patch URL ADMIN ROOM JSON          PATCH /admin/rooms/ROOM
  view URL ADMIN ROOM                GET /admin/rooms/ROOM (one JSON line)
  watch URL ADMIN SECS EVERY OUT     samples GET /admin/rooms every EVERY s for SECS s
  lateness OUT CHECK_MS ROOM_PREFIX  admissions' lateness from the watch samples (JSON)
  await-draw URL ADMIN ROOM OPENS_US LIMIT_S OUT
        polls the operator view every 0.1 s until the draw is recorded (or LIMIT_S after the
        opening); writes {"seen_us", "view"} to OUT
  check-draw URL ROOM ENTRANTS SEED ADMITTED BIN SAMPLE [--order ORDER_SEED]
        sorts the room's entrants byte-wise, runs `BIN draw-order` (seed ORDER_SEED, by default
        SEED), polls SAMPLE of them picked with SEED and compares each position with the drawn
        one; also how long the polls took (JSON)
  ticks LOG ROOM    the scheduler passes (debug log, JSON lines) that skipped tokens of ROOM
  main-ticks BATCH  (log on stdin) the scheduler passes whose admission of `main` admitted BATCH
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from redisq import Line, Redis, uid_bytes, value_of  # noqa: E402  (the bench's RESP client)

USER_BASE = 5_000_000


def rrandom(room: str, n: int) -> bytes:
    """The 24 random-looking bytes of token n of `room`: md5(R "t" n), half of md5(R "u" n)."""
    r = room.encode()
    return hashlib.md5(b"%st%d" % (r, n)).digest() + hashlib.md5(b"%su%d" % (r, n)).digest()[:8]


def rtok(room: str, n: int) -> str:
    """bench.rtok(R, n) of bench/sql/rooms.sql: token n of `room`, at seq n."""
    return "%s.%s" % (room, value_of(rrandom(room, n), n))


def now_us() -> int:
    return time.time_ns() // 1000


# ------------------------------------------------------------------------------------ Redis


def cmd_load(port: int, prefix: str, specs: list[str]) -> None:
    r = Redis(port)
    for spec in specs:
        room, count, ago = spec.split(":")
        count, ago = int(count), int(ago)
        ns = "{%s:%s}" % (prefix, room)
        line = Line(r, ns)
        if line.issued:
            raise SystemExit(f"load: the line of {room} is not empty ({ns}:issued {line.issued})")
        line.create()
        issued = r.clock() - ago * 1_000_000
        for n in range(1, count + 1):
            line.append(rrandom(room, n), uid_bytes(USER_BASE + n), issued)
        line.close()


def cmd_check_redis(port: int, prefix: str, rooms: list[str]) -> int:
    """bench/redisq.py's line invariants (--full) for each room's line, a "room: check: n" line each."""
    import contextlib
    import io
    from redisq import cmd_check
    for room in rooms:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            cmd_check(port, f"{prefix}:{room}", True, None, room)
        for line in buf.getvalue().splitlines():
            print(f"{room}: {line}")
    return 0


# Moves the `seen` of records stored WAITING forward (note_seen.lua's write, without its
# derivation: a token admitted meanwhile gets one too, which nothing reads), one script per
# batch so no retirement can fall between the read and the write of a record.
# KEYS: 1 the line's cursor (its slot); ARGV: 1 the namespace, 2 now (µs), 3... seqs.
SEEN = """
local ns, now = ARGV[1], tonumber(ARGV[2])
local moved = 0
for i = 3, #ARGV do
  local seq = tonumber(ARGV[i])
  local bucket = ns .. ':r:' .. string.format('%d', math.floor(seq / 128))
  local field = string.format('%d', seq % 128)
  local raw = redis.call('HGET', bucket, field)
  if raw and (#raw == 48 or #raw == 56) then
    local seen = now
    if #raw == 56 then seen = math.max(seen, struct.unpack('>I8', raw, 49)) end
    redis.call('HSET', bucket, field, string.sub(raw, 1, 48) .. struct.pack('>I8', seen))
    moved = moved + 1
  end
end
return moved
"""


def cmd_seen_redis(port: int, prefix: str, room: str, count: int, every: int) -> None:
    """The records of tokens n % EVERY == 0 (n their seq) still stored WAITING get `seen` = now
    (8 bytes big-endian after the issue time); the others are left alone (nothing is created)."""
    r, ns = Redis(port), "{%s:%s}" % (prefix, room)
    clock = r.clock()
    seqs = list(range(every, count + 1, every))
    for i in range(0, len(seqs), 1000):
        r.queue("EVAL", SEEN, 1, f"{ns}:cursor", ns, clock, *seqs[i:i + 1000])
    r.flush()


# ------------------------------------------------------------------------------------- data


def cmd_data(directory: str, specs: list[str]) -> None:
    for spec in specs:
        name, _, parts = spec.partition("=")
        lists = []
        for part in parts.split(","):
            room, first, last, step = part.split(":")
            lists.append([rtok(room, n) for n in range(int(first), int(last) + 1, int(step))])
        with open(f"{directory}/{name}", "w", encoding="ascii") as fh:
            for i in range(max(len(x) for x in lists)):
                for x in lists:
                    if i < len(x):
                        fh.write(x[i] + "\n")


# ------------------------------------------------------------------------------------- HTTP


class Api:
    def __init__(self, url: str, admin: str | None = None):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.admin = admin
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def call(self, method: str, path: str, body=None, bearer: str | None = None):
        headers = {}
        bearer = bearer or self.admin
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def cmd_create(url: str, admin: str, bodies: list[str]) -> int:
    api = Api(url, admin)
    for body in bodies:
        status, answer = api.call("POST", "/admin/rooms", body.encode())
        if status != 201:
            print(f"POST /admin/rooms {body}: {status} {answer}", file=sys.stderr)
            return 1
    return 0


def cmd_patch(url: str, admin: str, room: str, body: str) -> int:
    status, answer = Api(url, admin).call("PATCH", f"/admin/rooms/{room}", body.encode())
    if status != 200:
        print(f"PATCH /admin/rooms/{room} {body}: {status} {answer}", file=sys.stderr)
        return 1
    return 0


def cmd_view(url: str, admin: str, room: str) -> int:
    status, answer = Api(url, admin).call("GET", f"/admin/rooms/{room}")
    print(json.dumps(answer))
    return 0 if status == 200 else 1


def parse_time_us(s: str | None) -> int | None:
    """RFC 3339 (the API's times, up to nanoseconds) -> µs since the epoch."""
    if not s:
        return None
    import calendar
    date, _, rest = s.partition("T")
    zone_at = max(rest.rfind("Z"), rest.rfind("+"), rest.rfind("-"))
    clock, zone = rest[:zone_at], rest[zone_at:]
    hms, _, frac = clock.partition(".")
    y, mo, d = (int(x) for x in date.split("-"))
    h, mi, sec = (int(x) for x in hms.split(":"))
    us = int((frac + "000000")[:6])
    offset = 0
    if zone not in ("Z", ""):
        sign = 1 if zone[0] == "+" else -1
        zh, zm = zone[1:].split(":")
        offset = sign * (int(zh) * 3600 + int(zm) * 60)
    return (calendar.timegm((y, mo, d, h, mi, sec)) - offset) * 1_000_000 + us


def cmd_watch(url: str, admin: str, secs: float, every: float, out: str) -> int:
    api = Api(url, admin)
    end = time.monotonic() + secs
    slow = 0
    with open(out, "w", encoding="utf-8") as fh:
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                status, rooms = api.call("GET", "/admin/rooms")
            except OSError as e:
                print(f"watch: {e}", file=sys.stderr)
                time.sleep(every)
                continue
            took = time.monotonic() - t0
            if status == 200:
                fh.write(json.dumps({"t_us": now_us(), "took_ms": took * 1e3, "rooms": {
                    r["id"]: [r.get("lastAdmissionAt"), r.get("admittedThrough"), r.get("admitIntervalSecs"),
                              r.get("paused")] for r in rooms}}) + "\n")
            if took > every:
                slow += 1
            time.sleep(max(0.0, every - took))
    return 0


def cmd_lateness(out: str, check_ms: float, prefix: str) -> int:
    """Each admission's lateness: its time minus (the room's previous admission + interval)."""
    per_room: dict[str, list[tuple[int, int]]] = {}
    intervals: dict[str, int] = {}
    samples, reads = 0, []
    with open(out, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            samples += 1
            reads.append(rec["took_ms"])
            for room, (last, admitted, interval, paused) in rec["rooms"].items():
                if not room.startswith(prefix) or paused:
                    continue
                intervals[room] = int(interval)
                at = parse_time_us(last)
                seen = per_room.setdefault(room, [])
                if at is not None and (not seen or seen[-1][0] != at):
                    seen.append((at, admitted))
    late = []
    worst = None
    for room, seen in per_room.items():
        for (a, _), (b, _) in zip(seen, seen[1:]):
            ms = (b - (a + intervals[room] * 1_000_000)) / 1000
            late.append(ms)
            if worst is None or ms > worst[0]:
                worst = (ms, room, b)
    late.sort()
    reads.sort()
    pick = lambda xs, p: xs[max(0, min(len(xs) - 1, int(len(xs) * p / 100 + 0.999999) - 1))] if xs else None  # noqa: E731
    print(json.dumps({
        "rooms": len(per_room), "admissions": len(late), "samples": samples, "check_ms": check_ms,
        "max_ms": late[-1] if late else None, "p50_ms": pick(late, 50), "p99_ms": pick(late, 99),
        "min_ms": late[0] if late else None, "over_check": sum(1 for x in late if x > check_ms),
        "worst_room": worst[1] if worst else None, "view_p50_ms": pick(reads, 50), "view_max_ms": reads[-1] if reads else None,
    }))
    return 0


def cmd_await_draw(url: str, admin: str, room: str, opens_us: int, limit_s: float, out: str) -> int:
    api = Api(url, admin)
    deadline = opens_us + int(limit_s * 1_000_000)
    view = None
    while now_us() < deadline:
        status, view = api.call("GET", f"/admin/rooms/{room}")
        if status == 200 and view.get("draw"):
            break
        time.sleep(0.1)
    seen = now_us()
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"seen_us": seen, "view": view}, fh)
    return 0 if view and view.get("draw") else 1


def cmd_check_draw(url: str, room: str, entrants: int, seed: int, admitted: int, binary: str, sample: int,
                   order_seed: int | None = None) -> int:
    """SEED picks the sample; the order is the draw's (ORDER_SEED, by default SEED)."""
    pick_seed, seed = seed, (seed if order_seed is None else order_seed)
    values = sorted(rtok(room, n).encode() for n in range(1, entrants + 1))
    drawn = [0] * entrants
    proc = subprocess.run([binary, "draw-order", "--seed", str(seed), "--entrants", str(entrants)],
                          check=True, capture_output=True)
    for line in proc.stdout.splitlines():
        i, p = line.split()
        drawn[int(i)] = int(p)
    rng = random.Random(pick_seed)
    api = Api(url)
    exact = wrong = 0
    examples = []
    took = []
    started = time.monotonic()
    for i in rng.sample(range(entrants), min(sample, entrants)):
        token = values[i].decode()
        t0 = time.monotonic()
        status, body = api.call("GET", "/queue/token", bearer=token)
        took.append((time.monotonic() - t0) * 1e3)
        want = drawn[i] - admitted
        if status == 200 and body["status"] == "WAITING":
            ok = body["position"] == want
        elif status == 200 and body["status"] in ("ACTIVE", "EXPIRED"):
            ok = want <= 0  # admitted (or skipped) at the opening: its place is behind the cursor
        else:
            ok = False
        if ok:
            exact += 1
        else:
            wrong += 1
            if len(examples) < 3:
                examples.append(f"index {i}: drawn {drawn[i]}, answered {status} {body}")
    took.sort()
    print(json.dumps({"checked": exact + wrong, "exact": exact, "wrong": wrong, "examples": examples,
                      "polls_s": round(time.monotonic() - started, 2),
                      "poll_p50_ms": took[len(took) // 2] if took else None, "poll_max_ms": took[-1] if took else None}))
    return 0


def log_events(lines):
    """The JSON lines of a server log, each flattened: its `fields` merged with the top level
    (a `span` or `spans` left out)."""
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        f = dict(rec.get("fields") or {})
        f.update({k: v for k, v in rec.items() if k not in ("fields", "span", "spans")})
        yield f


def cmd_ticks(log: str, room: str) -> int:
    """Pairs each `room check changed state` of ROOM that skipped tokens with the duration of
    its scheduler pass (the next `scheduler tick` line), and gives the other passes' median."""
    ticks, others, pending = [], [], None
    with open(log, encoding="utf-8", errors="replace") as fh:
        for f in log_events(fh):
            msg = f.get("message")
            if msg == "room check changed state" and f.get("room") == room and int(f.get("abandoned") or 0) > 0:
                pending = (int(f.get("admitted") or 0), int(f["abandoned"]))
            elif msg == "scheduler tick" and "duration_ms" in f:
                if pending:
                    ticks.append({"admitted": pending[0], "abandoned": pending[1], "pass_ms": float(f["duration_ms"])})
                    pending = None
                else:
                    others.append(float(f["duration_ms"]))
    others.sort()
    print(json.dumps({"ticks": ticks, "other_passes": len(others),
                      "other_p50_ms": others[len(others) // 2] if others else None,
                      "other_max_ms": others[-1] if others else None}))
    return 0


def cmd_main_ticks(batch: int) -> int:
    """From a server log on stdin: the passes of the scheduler whose `main` admission admitted
    BATCH (`scheduler tick` at debug, its duration_ms the elapsed time the pass recorded in
    scheduler_tick_duration_seconds)."""
    ticks = [float(f["duration_ms"]) for f in log_events(sys.stdin)
             if f.get("message") == "scheduler tick" and int(f.get("admitted") or 0) == batch and "duration_ms" in f]
    print(json.dumps({"batch": batch, "ticks_ms": ticks, "max_ms": max(ticks) if ticks else None}))
    return 0


def main(argv: list[str]) -> int:
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "load" and len(args) >= 3:
        cmd_load(int(args[0]), args[1], args[2:])
        return 0
    if cmd == "check-redis" and len(args) >= 3:
        return cmd_check_redis(int(args[0]), args[1], args[2:])
    if cmd == "seen-redis" and len(args) == 5:
        cmd_seen_redis(int(args[0]), args[1], args[2], int(args[3]), int(args[4]))
        return 0
    if cmd == "data" and len(args) >= 2:
        cmd_data(args[0], args[1:])
        return 0
    if cmd == "create" and len(args) >= 3:
        return cmd_create(args[0], args[1], args[2:])
    if cmd == "patch" and len(args) == 4:
        return cmd_patch(*args)
    if cmd == "view" and len(args) == 3:
        return cmd_view(*args)
    if cmd == "watch" and len(args) == 5:
        return cmd_watch(args[0], args[1], float(args[2]), float(args[3]), args[4])
    if cmd == "lateness" and len(args) == 3:
        return cmd_lateness(args[0], float(args[1]), args[2])
    if cmd == "await-draw" and len(args) == 6:
        return cmd_await_draw(args[0], args[1], args[2], int(args[3]), float(args[4]), args[5])
    if cmd == "check-draw" and len(args) in (7, 9):
        order = int(args[8]) if len(args) == 9 and args[7] == "--order" else None
        return cmd_check_draw(args[0], args[1], int(args[2]), int(args[3]), int(args[4]), args[5], int(args[6]), order)
    if cmd == "ticks" and len(args) == 2:
        return cmd_ticks(*args)
    if cmd == "main-ticks" and len(args) == 1:
        return cmd_main_ticks(int(args[0]))
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
