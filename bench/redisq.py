#!/usr/bin/env python3
"""The bench's side of the Redis queue store (python3 standard library only).

Writes the same line that bench/sql/prepare.sql and bench/sql/waiting.sql write into
PostgreSQL, in the Redis layout of crates/adapters-redis (its lib.rs, "Layout"): token n has
the value bench.tok(n) = md5('t' || n) || md5('u' || n) and the user bench.uid(n), so the wrk
data files exported from PostgreSQL address the same tokens on either store. Commands are
pipelined over one socket (RESP), a million tokens in seconds.

Subcommands (PORT is the bench's private redis-server on 127.0.0.1, or on REDISQ_HOST when that
is set (bench/cluster.sh: a master of the reference deployment's Redis Cluster, which holds a
room's whole line in one hash slot); PREFIX the deployment's key prefix):
  active PORT PREFIX RANGES        ACTIVE tokens for users in RANGES ("1-2000,10001-70000"),
                                   seq 1.. in that order, expiring in an hour, as one
                                   admission that "just ran" leaves them (stored WAITING, in
                                   the list, the cursor past them, one admission record)
  waiting PORT PREFIX FROM TO      appends WAITING tokens for users FROM..TO to the line
  check PORT PREFIX [--full] [--paid FILE]
                                   the queue invariants, one "name: violations" line each;
                                   --full walks the whole waiting list (O(line), blocks Redis
                                   for about a second per million), --paid checks that every
                                   token in FILE (one value a line) is stored EXPIRED (or
                                   gone after its retention)
  memory PORT                      used_memory in bytes
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time

BATCH = 5000


class Redis:
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
            data = self.rd.read(n + 2)[:-2]
            return data.decode()
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


def tok(n: int) -> str:
    return hashlib.md5(b"t%d" % n).hexdigest() + hashlib.md5(b"u%d" % n).hexdigest()


def uid(n: int) -> str:
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def ranges(spec: str):
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        yield from range(int(lo), int(hi or lo) + 1)


def now_us() -> int:
    return time.time_ns() // 1000


def cmd_active(port: int, prefix: str, spec: str) -> None:
    # An admission writes no token (crates/adapters-redis, "Admission records" in
    # src/lua/prelude.lua): the tokens stay stored WAITING in the waiting list, the cursor moves
    # past them, and one record says when they were admitted and until when.
    r, ns = Redis(port), "{%s}" % prefix
    now = now_us()
    expires = now + 3600 * 1_000_000
    seq = after = int(r.call("GET", f"{ns}:issued") or 0)
    c = r.call("HMGET", f"{ns}:cursor", "admitted", "swept")
    if int(c[0] or 0) != after or int(c[1] if c[1] is not None else after) != after:
        raise SystemExit("active: the line must have nothing WAITING or admitted and unswept")
    for n in ranges(spec):
        seq += 1
        v = tok(n)
        r.queue("HSET", f"{ns}:t:{v}", "user", uid(n), "seq", seq, "status", "WAITING",
                "issued", now - 60_000_000)
        r.queue("RPUSH", f"{ns}:waiting", v)
        r.queue("SET", f"{ns}:u:{uid(n)}", v)
    r.flush()
    r.call("SET", f"{ns}:issued", seq)
    if seq > after:
        r.call("ZADD", f"{ns}:admissions", seq, f"{seq}:{after}:{now}:{expires}")
        r.call("HSET", f"{ns}:open", seq, seq - after)
        r.call("HINCRBY", f"{ns}:cursor", "live", seq - after)
    r.call("HSET", f"{ns}:cursor", "admitted", seq, "last", now, "swept", after)


def cmd_waiting(port: int, prefix: str, lo: int, hi: int) -> None:
    r, ns = Redis(port), "{%s}" % prefix
    now = now_us()
    seq = int(r.call("GET", f"{ns}:issued") or 0)
    for n in range(lo, hi + 1):
        seq += 1
        v = tok(n)
        r.queue("HSET", f"{ns}:t:{v}", "user", uid(n), "seq", seq, "status", "WAITING", "issued", now)
        r.queue("RPUSH", f"{ns}:waiting", v)
        r.queue("SET", f"{ns}:u:{uid(n)}", v)
    r.flush()
    r.call("SET", f"{ns}:issued", seq)


# Walks the waiting list in one script. It holds every token not yet swept in position order:
# index i is position swept + 1 + i (the cursor's `swept`; absent: `admitted`, as a version
# that popped at admission left it). A token's position is its seq as the adapter shows it:
# once a draw is recorded (the cursor's draw_at), the stored (arrival) seq s mapped through the
# draw's position table {ns}:drawn (4 bytes big-endian at byte 4*(s-1), 0 or past the end:
# unchanged; drawn_seq in the adapter's prelude.lua). The table is read once (4 MB for a
# million), not a GETRANGE per token. Above the cursor every token is stored WAITING; at or
# below it (admitted by a record, not yet swept) it is WAITING (derived ACTIVE) or written
# EXPIRED (paid, abandoned, lapsed), or gone after its retention.
WALK = """
local c = redis.call('HMGET', KEYS[2], 'admitted', 'draw_at', 'swept')
local admitted = tonumber(c[1] or '0')
local swept = tonumber(c[3] or c[1] or '0')
local drawn = c[2] and (redis.call('GET', KEYS[3]) or '') or ''
local len = redis.call('LLEN', KEYS[1])
local bad, i = 0, 0
while i < len do
  local values = redis.call('LRANGE', KEYS[1], i, i + 9999)
  for j, v in ipairs(values) do
    local pos = swept + i + j
    local t = redis.call('HMGET', ARGV[1] .. v, 'status', 'seq')
    local seq = tonumber(t[2] or '-1')
    if seq >= 1 and 4 * seq <= #drawn then
      local n = struct.unpack('>I4', drawn, 4 * (seq - 1) + 1)
      if n > 0 then seq = n end
    end
    if pos > admitted then
      if t[1] ~= 'WAITING' or seq ~= pos then bad = bad + 1 end
    elseif t[1] and (seq ~= pos or (t[1] ~= 'WAITING' and t[1] ~= 'EXPIRED')) then
      bad = bad + 1
    end
  end
  i = i + 10000
end
return bad
"""


def cmd_check(port: int, prefix: str, full: bool, paid: str | None) -> int:
    r, ns = Redis(port), "{%s}" % prefix
    issued = int(r.call("GET", f"{ns}:issued") or 0)
    c = r.call("HMGET", f"{ns}:cursor", "admitted", "swept", "live")
    admitted = int(c[0] or 0)
    swept = int(c[1] if c[1] is not None else admitted)
    waiting = int(r.call("LLEN", f"{ns}:waiting"))
    opened = sum(int(n) for n in r.call("HVALS", f"{ns}:open"))
    rows = [("line length not issued minus swept", abs(issued - swept - waiting)),
            ("cursor behind the sweep", max(swept - admitted, 0)),
            ("open records' count not their sum", abs(int(c[2] or 0) - opened))]
    if full:
        rows.append(("waiting entries out of position or status",
                     int(r.call("EVAL", WALK, 3, f"{ns}:waiting", f"{ns}:cursor", f"{ns}:drawn",
                                f"{ns}:t:"))))
    if paid:
        with open(paid, encoding="ascii") as fh:
            values = [line.strip() for line in fh if line.strip()]
        bad = 0
        for i in range(0, len(values), BATCH):
            chunk = values[i:i + BATCH]
            r.sock.sendall(b"".join(r.encode("HGET", f"{ns}:t:{v}", "status") for v in chunk))
            bad += sum(1 for _ in chunk if r.reply() in ("ACTIVE", "WAITING"))
        rows.append(("tokens that paid and are not EXPIRED", bad))
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
    if len(argv) >= 3 and argv[0] == "check":
        rest = argv[3:]
        paid = rest[rest.index("--paid") + 1] if "--paid" in rest else None
        return cmd_check(int(argv[1]), argv[2], "--full" in rest, paid)
    if len(argv) == 2 and argv[0] == "memory":
        info = Redis(int(argv[1])).call("INFO", "memory")
        for line in info.splitlines():
            if line.startswith("used_memory:"):
                print(line.split(":", 1)[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
