#!/usr/bin/env python3
"""The bench's side of the Redis queue store (python3 standard library only).

Writes the same line that bench/sql/prepare.sql and bench/sql/waiting.sql write into
PostgreSQL, in the Redis layout of crates/adapters-redis (layout 2: src/keys.rs and "Records"
in src/lua/prelude.lua), so the wrk data files exported from PostgreSQL address the same
tokens on either store. A token's value is 32 bytes, shown as 64 hex digits: 24 random ones and
its arrival seq (8 bytes big-endian), which names its record. Token n of the bench, at seq s,
has the value tok(n, s) = md5('t' n) || first 8 bytes of md5('u' n) || s, which is
bench.tok(n) = ... || bench.seq(n) of prepare.sql when s is the seq the bench's line gives user
n there; and the user bench.uid(n). Commands are pipelined over one socket (RESP), a million
tokens in seconds.

The layout, in namespace {ns} ({prefix} for room main, {prefix:room} for a room):
  {ns}:issued    the last seq (a counter)
  {ns}:cursor    hash: admitted, last, swept, live, closed, epoch, layout ('2'), abandoned,
                 imax/iback, the draw's fields
  {ns}:waiting   list: the seqs (decimal) of the tokens not yet swept, in position order
  {ns}:r:<seq // 128>  hash, field seq % 128: a token stored WAITING, packed
                 random(24) user(16) issued(8) [seen(8)] (integers big-endian, times in µs)
  {ns}:x:<seq>   string with a PX retention: a token stored EXPIRED, packed random(24) user(16)
                 issued(8) activated(8) expires(8) reason(1: T, P or A; times 0 = none)
  {ns}:users     hash: user id (16 bytes) -> seq of their token while it is stored WAITING
  {ns}:admissions, {ns}:open, {ns}:drawn, {ns}:staging: the admission records, their open
                 counts, the draw's position table and its staging list

Subcommands (PORT is the bench's private redis-server on 127.0.0.1, or on REDISQ_HOST when that
is set (bench/cluster.sh: a master of the reference deployment's Redis Cluster, which holds a
room's whole line in one hash slot); PREFIX the deployment's key prefix):
  active PORT PREFIX RANGES        ACTIVE tokens for users in RANGES ("1-2000,10001-70000"),
                                   seq 1.. in that order, expiring in an hour, as one
                                   admission that "just ran" leaves them (stored WAITING, in
                                   the list, the cursor past them, one admission record)
  waiting PORT PREFIX FROM TO      appends WAITING tokens for users FROM..TO to the line
  tokens PORT PREFIX RANGES        the value of each user's token in RANGES ("lo-hi[:step],...")
                                   as room main's line stores it, one a line ("-" for a user
                                   with no token stored WAITING)
  check PORT PREFIX [--full] [--paid FILE]
                                   the queue invariants, one "name: violations" line each;
                                   --full walks the whole waiting list and every record bucket
                                   (O(line), blocks Redis for about 3 s per million tokens),
                                   --paid checks that every token in FILE (one value a line)
                                   is stored EXPIRED, reason PAID (or gone after its retention)
  memory PORT                      used_memory in bytes
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time

BATCH = 5000
# Consecutive seqs sharing one record hash (keys.rs RECORDS_PER_BUCKET).
BUCKET = 128
# The cursor's `layout` the adapter reads (prelude.lua LAYOUT); a line without it is refused.
LAYOUT = b"2"


class Redis:
    """A RESP client: bulk replies are bytes (records are binary), errors raise."""

    def __init__(self, port: int):
        self.sock = socket.create_connection((os.environ.get("REDISQ_HOST", "127.0.0.1"), port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rd = self.sock.makefile("rb", buffering=1 << 20)
        self.out: list[bytes] = []
        self.pending = 0

    @staticmethod
    def encode(*args) -> bytes:
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(parts)

    def reply(self):
        line = self.rd.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            return self.rd.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def queue(self, *args) -> None:
        self.out.append(self.encode(*args))
        self.pending += 1
        if self.pending >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.out:
            self.sock.sendall(b"".join(self.out))
            self.out = []
            for _ in range(self.pending):
                self.reply()
            self.pending = 0

    def call(self, *args):
        self.flush()
        self.sock.sendall(self.encode(*args))
        return self.reply()

    def many(self, commands) -> list:
        """The replies of `commands` (tuples of arguments), pipelined BATCH at a time."""
        self.flush()
        replies: list = []
        commands = list(commands)
        for i in range(0, len(commands), BATCH):
            chunk = commands[i:i + BATCH]
            self.sock.sendall(b"".join(self.encode(*c) for c in chunk))
            replies.extend(self.reply() for _ in chunk)
        return replies

    def clock(self) -> int:
        """Redis' clock in µs (the adapter's epoch is Redis' TIME)."""
        t = self.call("TIME")
        return int(t[0]) * 1_000_000 + int(t[1])


def random_part(n: int) -> bytes:
    """The 24 random-looking bytes of token n: md5('t' n) and the first half of md5('u' n)."""
    return hashlib.md5(b"t%d" % n).digest() + hashlib.md5(b"u%d" % n).digest()[:8]


def value_of(random: bytes, seq: int) -> str:
    """A token's value: its random part and its seq (8 bytes big-endian), in hex."""
    return (random + seq.to_bytes(8, "big")).hex()


def tok(n: int, seq: int) -> str:
    """Token n at `seq`: bench.tok(n) of bench/sql/prepare.sql when seq = bench.seq(n)."""
    return value_of(random_part(n), seq)


def uid(n: int) -> str:
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uid_bytes(n: int) -> bytes:
    """bench.uid(n) as the layout keeps a user: the UUID's 16 bytes."""
    return n.to_bytes(16, "big")


def ranges(spec: str):
    for part in spec.split(","):
        part, _, step = part.partition(":")
        lo, _, hi = part.partition("-")
        yield from range(int(lo), int(hi or lo) + 1, int(step or 1))


def now_us() -> int:
    return time.time_ns() // 1000


def parse_value(value: str) -> tuple[str | None, bytes, int] | None:
    """(room or None for main, random part, seq) of a token value; None when it cannot be one
    of this layout (keys.rs `place`)."""
    room, _, secret = value.rpartition(".")
    if len(secret) != 64:
        return None
    try:
        raw = bytes.fromhex(secret)
    except ValueError:
        return None
    seq = int.from_bytes(raw[24:], "big")
    if seq == 0 or seq >= 1 << 53:
        return None
    return (room or None), raw[:24], seq


class Line:
    """Appends tokens stored WAITING to one line, as issue.lua stores them (record, list,
    users hash, counter, the cursor's imax/iback), pipelined: a record hash takes up to 128
    fields a command."""

    def __init__(self, r: Redis, ns: str):
        self.r, self.ns = r, ns
        self.issued = int(r.call("GET", f"{ns}:issued") or 0)
        self.seq = self.issued
        self.bucket: int | None = None
        self.fields: list = []
        self.seqs: list = []
        self.users: list = []
        self.times: tuple[int, int] | None = None  # (min, max) issue time of what is appended

    def create(self) -> None:
        """The line's epoch and layout, as the first issue into an empty namespace writes them
        (prelude.lua ensure_epoch); a line of an earlier layout is refused."""
        c = self.r.call("HMGET", f"{self.ns}:cursor", "epoch", "layout")
        if c[0] is not None and c[1] != LAYOUT:
            raise SystemExit(f"{self.ns}: a line of an earlier layout (layout {c[1]!r}); delete its keys first")
        if c[0] is None:
            self.r.call("HSET", f"{self.ns}:cursor", "epoch", self.r.clock(), "layout", LAYOUT)

    def _records(self) -> None:
        if self.fields:
            self.r.queue("HSET", f"{self.ns}:r:{self.bucket}", *self.fields)
            self.fields = []

    def _lists(self) -> None:
        if self.seqs:
            self.r.queue("RPUSH", f"{self.ns}:waiting", *self.seqs)
            self.r.queue("HSET", f"{self.ns}:users", *self.users)
            self.seqs, self.users = [], []

    def append(self, random: bytes, user: bytes, issued: int) -> int:
        """Stores the next token; its seq."""
        self.seq += 1
        seq = self.seq
        bucket = seq // BUCKET
        if bucket != self.bucket:
            self._records()
            self.bucket = bucket
        self.fields += [seq % BUCKET, random + user + issued.to_bytes(8, "big")]
        self.seqs.append(seq)
        self.users += [user, seq]
        if len(self.seqs) >= 1000:
            self._lists()
        lo, hi = self.times or (issued, issued)
        self.times = (min(lo, issued), max(hi, issued))
        return seq

    def close(self) -> None:
        self._records()
        self._lists()
        self.r.flush()
        if self.seq == self.issued:
            return
        self.r.call("SET", f"{self.ns}:issued", self.seq)
        # issue.lua: imax the latest issue time, iback how far one fell behind it in line
        # order. Times within one append are in line order when they only increase, which the
        # bench's writers do (one time a call).
        lo, hi = self.times
        c = self.r.call("HMGET", f"{self.ns}:cursor", "imax", "iback")
        imax = int(c[0]) if c[0] is not None else None
        iback = int(c[1] or 0)
        back = 0 if imax is None else max(imax - lo, 0)
        self.r.call("HSET", f"{self.ns}:cursor", "imax", hi if imax is None else max(imax, hi),
                    "iback", max(iback, back))


def cmd_active(port: int, prefix: str, spec: str) -> None:
    # An admission writes no token (crates/adapters-redis, "Admission records" in
    # src/lua/prelude.lua): the tokens stay stored WAITING in the waiting list, the cursor moves
    # past them, and one record says when they were admitted and until when.
    r, ns = Redis(port), "{%s}" % prefix
    now = now_us()
    expires = now + 3600 * 1_000_000
    line = Line(r, ns)
    after = line.issued
    c = r.call("HMGET", f"{ns}:cursor", "admitted", "swept")
    if int(c[0] or 0) != after or int(c[1] if c[1] is not None else after) != after:
        raise SystemExit("active: the line must have nothing WAITING or admitted and unswept")
    line.create()
    for n in ranges(spec):
        line.append(random_part(n), uid_bytes(n), now - 60_000_000)
    line.close()
    seq = line.seq
    if seq > after:
        r.call("ZADD", f"{ns}:admissions", seq, f"{seq}:{after}:{now}:{expires}")
        r.call("HSET", f"{ns}:open", seq, seq - after)
        r.call("HINCRBY", f"{ns}:cursor", "live", seq - after)
    r.call("HSET", f"{ns}:cursor", "admitted", seq, "last", now, "swept", after)


def cmd_waiting(port: int, prefix: str, lo: int, hi: int) -> None:
    r, ns = Redis(port), "{%s}" % prefix
    now = now_us()
    line = Line(r, ns)
    line.create()
    for n in range(lo, hi + 1):
        line.append(random_part(n), uid_bytes(n), now)
    line.close()


def cmd_tokens(port: int, prefix: str, spec: str) -> None:
    r, ns = Redis(port), "{%s}" % prefix
    users = list(ranges(spec))
    seqs = r.many(("HGET", f"{ns}:users", uid_bytes(n)) for n in users)
    seqs = [int(s) if s is not None else None for s in seqs]
    records = r.many(("HGET", f"{ns}:r:{s // BUCKET}", s % BUCKET) for s in seqs if s is not None)
    records.reverse()
    out = []
    for s in seqs:
        raw = records.pop() if s is not None else None
        out.append(value_of(raw[:24], s) if raw else "-")
    sys.stdout.write("".join(v + "\n" for v in out))


# Walks the line in one script (a consistent view while the server runs). The waiting list holds
# the seq of every token not yet swept in position order: index i is position swept + 1 + i (the
# cursor's `swept`; absent: `admitted`, as a version that popped at admission left it). A token's
# position is its seq as the adapter shows it: once a draw is recorded (the cursor's draw_at),
# the stored (arrival) seq s mapped through the draw's position table {ns}:drawn (4 bytes
# big-endian at byte 4*(s-1), 0 or past the end: unchanged; drawn_seq in prelude.lua). The table
# is read once (4 MB for a million), not a GETRANGE per token. Above the cursor every token is
# stored WAITING (a record in its bucket); at or below it (admitted by a record, not yet swept)
# it is stored WAITING (derived ACTIVE) or EXPIRED ({ns}:x:<seq>: paid, abandoned, lapsed), or
# gone after its retention, never both. Then every bucket 0 .. issued // 128: each record is
# well formed, its user's entry in {ns}:users names it, and it is in the list; and every entry
# of {ns}:users names such a record. A record is read whole with its bucket (HGETALL) while the
# list runs in seq order (a line not drawn), else alone.
# KEYS: 1 the cursor (the line's slot); ARGV: 1 the namespace.
# Reply: { out of position or status, list entries that are no seq, stored both WAITING and
# EXPIRED, records of a bad shape, records their user's entry does not name, records not in
# the list, users entries naming no record }.
WALK = """
local ns = ARGV[1]
local c = redis.call('HMGET', KEYS[1], 'admitted', 'draw_at', 'swept')
local admitted = tonumber(c[1] or '0')
local swept = tonumber(c[3] or c[1] or '0')
local drawn = c[2] and (redis.call('GET', ns .. ':drawn') or '') or ''
local issued = tonumber(redis.call('GET', ns .. ':issued') or '0')
local len = redis.call('LLEN', ns .. ':waiting')
local place, noseq, both, shape, unnamed, outside, stale = 0, 0, 0, 0, 0, 0, 0
local listed = 0
local cached, records = nil, nil
local last = nil
local function record(seq)
  local b = math.floor(seq / 128)
  local f = string.format('%d', seq % 128)
  if b == cached then
    return records[f]
  end
  if last and seq == last + 1 then
    cached, records = b, {}
    local all = redis.call('HGETALL', ns .. ':r:' .. string.format('%d', b))
    for k = 1, #all, 2 do
      records[all[k]] = all[k + 1]
    end
    return records[f]
  end
  return redis.call('HGET', ns .. ':r:' .. string.format('%d', b), f) or nil
end
local i = 0
while i < len do
  local values = redis.call('LRANGE', ns .. ':waiting', i, i + 9999)
  for j, v in ipairs(values) do
    local pos = swept + i + j
    local seq = tonumber(v)
    if not seq or seq < 1 or string.format('%d', seq) ~= v then
      noseq = noseq + 1
      last = nil
    else
      local shown = seq
      if 4 * seq <= #drawn then
        local n = struct.unpack('>I4', drawn, 4 * (seq - 1) + 1)
        if n > 0 then shown = n end
      end
      local raw = record(seq)
      last = seq
      if raw then listed = listed + 1 end
      if pos > admitted then
        if not raw or shown ~= pos then place = place + 1 end
      else
        local x = redis.call('EXISTS', ns .. ':x:' .. v) == 1
        if raw and x then both = both + 1 end
        if (raw or x) and shown ~= pos then place = place + 1 end
      end
    end
  end
  i = i + 10000
end
local users = ns .. ':users'
local stored = 0
for b = 0, math.floor(issued / 128) do
  local all = redis.call('HGETALL', ns .. ':r:' .. string.format('%d', b))
  for k = 1, #all, 2 do
    stored = stored + 1
    local raw = all[k + 1]
    local f = tonumber(all[k])
    if (#raw ~= 48 and #raw ~= 56) or not f or f < 0 or f >= 128 then
      shape = shape + 1
    elseif redis.call('HGET', users, string.sub(raw, 25, 40)) ~= string.format('%d', b * 128 + f) then
      unnamed = unnamed + 1
    end
  end
end
outside = stored - listed
stale = redis.call('HLEN', users) - (stored - unnamed - shape)
return { place, noseq, both, shape, unnamed, outside, stale }
"""


def paid_violations(r: Redis, ns: str, room: str | None, values: list[str]) -> tuple[int, int]:
    """(paid tokens of this line not stored EXPIRED PAID nor gone, values that cannot be a token
    of this layout). A value of another room, or whose random part the record here does not
    hold (a token of another line at the same seq), is no token of this line."""
    mine = []
    malformed = 0
    for v in values:
        p = parse_value(v)
        if p is None:
            malformed += 1
        elif p[0] == room:
            mine.append(p)
    cmds = []
    for _, _, seq in mine:
        cmds.append(("HGET", f"{ns}:r:{seq // BUCKET}", seq % BUCKET))
        cmds.append(("GET", f"{ns}:x:{seq}"))
    replies = r.many(cmds)
    bad = 0
    for k, (_, random, _) in enumerate(mine):
        waiting, expired = replies[2 * k], replies[2 * k + 1]
        if waiting is not None and waiting[:24] == random:
            bad += 1
        elif expired is not None and expired[:24] == random and expired[64:65] != b"P":
            bad += 1
    return bad, malformed


def cmd_check(port: int, prefix: str, full: bool, paid: str | None, room: str | None = None) -> int:
    r, ns = Redis(port), "{%s}" % prefix
    issued = int(r.call("GET", f"{ns}:issued") or 0)
    c = r.call("HMGET", f"{ns}:cursor", "admitted", "swept", "live", "epoch", "layout")
    admitted = int(c[0] or 0)
    swept = int(c[1] if c[1] is not None else admitted)
    waiting = int(r.call("LLEN", f"{ns}:waiting"))
    opened = sum(int(n) for n in r.call("HVALS", f"{ns}:open"))
    rows = [("line length not issued minus swept", abs(issued - swept - waiting)),
            ("cursor behind the sweep", max(swept - admitted, 0)),
            ("open records' count not their sum", abs(int(c[2] or 0) - opened)),
            ("line not in layout 2 (epoch and layout '2' once issued)",
             int((issued > 0 or c[3] is not None) and (c[3] is None or c[4] != LAYOUT))),
            ("keys of the key-per-token layout ({ns}:active)", int(r.call("EXISTS", f"{ns}:active")))]
    if full:
        walk = r.call("EVAL", WALK, 1, f"{ns}:cursor", ns)
        rows += [("waiting entries out of position or status", walk[0]),
                 ("waiting entries that are no seq", walk[1]),
                 ("tokens stored both WAITING and EXPIRED", walk[2]),
                 ("records of a bad shape", walk[3]),
                 ("records their user's entry does not name", walk[4]),
                 ("records stored WAITING outside the waiting list", walk[5]),
                 ("users entries naming no record", walk[6])]
    if paid:
        with open(paid, encoding="ascii") as fh:
            values = [line.strip() for line in fh if line.strip()]
        bad, malformed = paid_violations(r, ns, room, values)
        rows += [("tokens that paid and are not EXPIRED", bad),
                 ("paid values that are no token of this layout", malformed)]
    for name, n in rows:
        print(f"{name}: {n}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "active":
        cmd_active(int(argv[1]), argv[2], argv[3])
        return 0
    if len(argv) == 5 and argv[0] == "waiting":
        cmd_waiting(int(argv[1]), argv[2], int(argv[3]), int(argv[4]))
        return 0
    if len(argv) == 4 and argv[0] == "tokens":
        cmd_tokens(int(argv[1]), argv[2], argv[3])
        return 0
    if len(argv) >= 3 and argv[0] == "check":
        rest = argv[3:]
        paid = rest[rest.index("--paid") + 1] if "--paid" in rest else None
        return cmd_check(int(argv[1]), argv[2], "--full" in rest, paid)
    if len(argv) == 2 and argv[0] == "memory":
        info = Redis(int(argv[1])).call("INFO", "memory").decode()
        for line in info.splitlines():
            if line.startswith("used_memory:"):
                print(line.split(":", 1)[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
