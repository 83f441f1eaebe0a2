#!/usr/bin/env python3
"""Summaries and the report of `make bench` (python3 standard library only).

Subcommands:
  pgbench PREFIX STDOUT              -> one JSON object: tps, p50/p99/max from the transaction log
  cpu SERVER_PID SCRIPT_PID [PID...] -> "busy ours" CPU ticks (see cpu_snapshot)
  render WORKDIR DOC                 -> prints the table and the targets, and replaces the block
                                        between the markers in DOC

WORKDIR/results.jsonl has one record per measurement, each with its "store" and "conns":
  {"phase": P, "kind": "endpoint"|"health"|"pgbench", "t0": s, "t1": s, "result": {...}}
  {"phase": P, "kind": "invariants", "ok": bool, "detail": "..."}
  {"phase": "poll_1m", "kind": "cache"|"redis_memory", ...}, {"kind": "crash"|"hwm", ...}
WORKDIR/rss.txt has "epoch_seconds rss_kB" lines; WORKDIR/meta.json the machine and settings.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import sys

# phase -> (label, expected statuses)
ENDPOINTS = {
    "health": ("GET /health/live", {200}),
    "poll_1k": ("poll, 1,000 waiting", {200}),
    "poll_1m": ("poll, 1,000,000 waiting", {200}),
    "issue": ("issue", {201}),
    "seats": ("seat map", {200}),
    "reserve": ("reserve", {201}),
    "pay": ("pay", {201}),
    "charge": ("charge", {200}),
    "identity_issue_off": ("issue, identity off", {201}),
    "identity_issue_on": ("issue, identity on", {201}),
    "identity_balance_off": ("balance read, identity off", {200}),
    "identity_balance_on": ("balance read, identity on", {200}),
    # The rooms phases, on a server of their own (bench/run.sh, "rooms").
    "rooms_health": ("GET /health/live, rooms server", {200}),
    "rooms_poll": ("poll, rooms' lines", {200}),
    "abandon_off": ("poll, abandonment off", {200}),
    "abandon_on": ("poll, abandonment on", {200}),
    "draw_poll": ("poll during the draw", {200}),
    # The line moving (bench/run.sh, "moving"): turns with admission paused and with it every
    # second, on the main server.
    "moving_waiting_still": ("poll of WAITING, line still", {200}),
    "moving_waiting_moving": ("poll of WAITING, line moving", {200}),
    "moving_issue_still": ("issue, line still", {201}),
    "moving_issue_moving": ("issue, line moving", {201}),
    "moving_active_still": ("poll of ACTIVE, line still", {200}),
    "moving_active_moving": ("poll of ACTIVE, line moving", {200}),
}
# The moving phase's phases: targets of their own (issue moving vs still, the polls' tails).
MOVING_PHASES = {p for p in ENDPOINTS if p.startswith("moving_")}
MOVING_ISSUE_RATIO = 0.9
MOVING_TAIL_FACTOR = 10.0
MOVING_TAIL_FLOOR_MS = 5.0
MOVING_TAIL_MAX_MS = 250.0
TICK_100K_MAX_MS = 50.0
# Phases measured on the rooms server: compared with its /health/live, left out of the tail
# target of the main endpoints (they have targets of their own).
ROOM_PHASES = {"rooms_health", "rooms_poll", "abandon_off", "abandon_on", "draw_poll"}
HEALTH_PHASES = {"health", "rooms_health"}
ROOMS_POLL_RATIO = 0.8
ABANDON_RATIO = 0.9
DRAW_POLL_P99_MS = 250.0
TICK_MAX_MS = 100.0
# The identity phase: what it measures, with identity on and off (phase names above).
IDENTITY_OF = {"issue": "token issue", "balance": "balance read"}
FUNNEL_EXPECTED = {200, 201, 409}
STORE_LABEL = {"postgres": "PostgreSQL", "redis": "Redis"}
# Which ceiling each phase is compared with: (phase of the pgbench record, label).
PGBENCH_OF = {"issue": ("issue_insert", "plain INSERT"), "seats": ("seats", "its SQL"),
              "reserve": ("reserve", "its SQL"), "pay": ("pay", "its SQL"), "charge": ("charge", "its SQL")}
ISSUE_PG_RATIO = 0.8
ISSUE_REDIS_RATIO = 0.35
POLL_RATIO = 0.8
POLL_P99_FACTOR = 1.5
WRITE_RATIO = 0.8
TAIL_FACTOR = 10.0
TAIL_MAX_MS = 250.0
IDENTITY_RATIO = 0.8
MARK_START = "<!-- bench:results:start -->"
MARK_END = "<!-- bench:results:end -->"


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    idx = max(0, min(len(sorted_values) - 1, math.ceil(len(sorted_values) * p / 100) - 1))
    return sorted_values[idx]


# ---------------------------------------------------------------------------------- pgbench


def pgbench_summary(prefix: str, stdout_path: str) -> dict:
    """tps from pgbench's own summary, latency percentiles from its transaction log."""
    with open(stdout_path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    tps = None
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    if m:
        tps = float(m.group(1))
    processed = failed = 0
    m = re.search(r"number of transactions actually processed: (\d+)", text)
    if m:
        processed = int(m.group(1))
    m = re.search(r"number of failed transactions: (\d+)", text)
    if m:
        failed = int(m.group(1))
    aborted = len(re.findall(r"aborted in command", text))
    lat = []
    for path in glob.glob(prefix + ".*"):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                # client_id transaction_no time script_no time_epoch time_us
                if len(parts) >= 3 and parts[2].isdigit():
                    lat.append(int(parts[2]) / 1000.0)
    lat.sort()
    return {"rps": tps, "requests": processed, "failed": failed + aborted,
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": lat[-1] if lat else None}


# -------------------------------------------------------------------------------------- CPU


def cpu_snapshot(server_pid: int, script_pid: int, *own_pids: int) -> str:
    """"busy ours" in clock ticks, for the other-load share of a measurement.

    busy: all CPUs' non-idle time (/proc/stat). ours: the server, the bench's other processes
    (its private Redis, the parked server and the local issuer of the identity phase),
    every PostgreSQL process of this cluster (the postmaster's reaped children included, so
    pgbench's exited backends count) and the bench script with everything it ran and reaped
    (wrk, pgbench, psql). What is left is other work on the machine during the measurement.
    """
    with open("/proc/stat", encoding="ascii") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    # user + nice + system + steal; interrupt time is left out, as it is mostly our own loopback
    # traffic and belongs to no process.
    busy = f[0] + f[1] + f[2] + (f[7] if len(f) > 7 else 0)
    ours = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
                raw = fh.read()
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2:].split()
        utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
        own = utime + stime
        if int(pid) == server_pid or int(pid) in own_pids:
            ours += own
        elif int(pid) == script_pid:
            ours += own + cutime + cstime
        elif comm == "postgres" or cmd.startswith("postgres"):
            # Backends of other databases are other people's work, unless they exited (then
            # they are in the postmaster's children time and counted as ours: an undercount).
            if "postgres: " in cmd and " idle" not in cmd and "concert_bench" not in cmd and any(
                    w in cmd for w in (" SELECT", " INSERT", " UPDATE", " DELETE", " COMMIT", " BEGIN")):
                continue
            ours += own + cutime + cstime
    return f"{busy} {ours}"


def other_load(rec: dict | None, meta: dict) -> float | None:
    """Share (%) of the machine's CPU used by other work during one measurement."""
    if not rec or not rec.get("cpu") or len(rec["cpu"]) != 4:
        return None
    b0, o0, b1, o1 = rec["cpu"]
    capacity = (rec["t1"] - rec["t0"]) * meta.get("nproc", 1) * meta.get("clk_tck", 100)
    if capacity <= 0:
        return None
    return max(0.0, 100.0 * ((b1 - b0) - (o1 - o0)) / capacity)


# -------------------------------------------------------------------------------------- RSS


def load_rss(workdir: str) -> list[tuple[float, float]]:
    samples = []
    path = os.path.join(workdir, "rss.txt")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 2:
                    try:
                        samples.append((float(parts[0]), int(parts[1]) / 1024.0))
                    except ValueError:
                        pass
    return samples


def peak_rss(samples, t0: float, t1: float) -> float | None:
    window = [mb for t, mb in samples if t0 <= t <= t1]
    return max(window) if window else None


# ----------------------------------------------------------------------------------- render


def fmt_num(v, digits=0) -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def fmt_ms(v) -> str:
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_statuses(res: dict, expected: set[int]) -> tuple[str, int]:
    parts, errors = [], 0
    statuses = res.get("statuses") or {}
    for code in sorted(statuses, key=int):
        n = int(statuses[code])
        if not n:
            continue
        if int(code) in expected:
            parts.append(f"{code}×{n:,}")
        else:
            parts.append(f"**{code}×{n:,}**")
            errors += n
    for kind, n in sorted((res.get("socket_errors") or {}).items()):
        if kind != "status" and n:
            parts.append(f"**{kind}×{n:,}**")
            errors += n
    return (" ".join(parts) or "none"), errors


def paired(a, b, want, digits=2):
    """Side `a` against side `b` of a phase measured both ways in one run: whether `a` made
    `want` × `b` with no unexpected response, and the detail line (throughputs, ratio, p99s).
    Three digits where two would round a miss up to the target (0.797 is not 0.80)."""
    ratio = a["rps"] / b["rps"] if a and b and a["rps"] and b["rps"] else None
    errors = (a or {}).get("errors", 1) + (b or {}).get("errors", 1)
    if ratio and round(ratio, digits) >= want > ratio:
        digits += 1
    detail = (f"{fmt_num((a or {}).get('rps'))} vs {fmt_num((b or {}).get('rps'))} = "
              f"{fmt_num(ratio, digits) if ratio else '–'}"
              + (f"; p99 {fmt_ms(a['p99'])} vs {fmt_ms(b['p99'])} ms" if a and b else "")
              + (f", **{errors:,} unexpected responses**" if errors else ""))
    return ratio is not None and ratio >= want and errors == 0, detail


def merge_repeats(records):
    """One record per (store, phase, kind, conns): a phase measured in several turns (the
    abandonment phase takes turns off, on, on, off so that a drift of the machine's load
    weighs on both sides alike) reads as one measurement over all its turns: requests and
    time summed, the percentiles the worst turn's (a percentile of the whole is not kept)."""
    merged, out = {}, []
    for rec in records:
        res = rec.get("result")
        key = (rec.get("store"), rec.get("phase"), rec.get("kind"), rec.get("conns"))
        if rec.get("kind") != "endpoint" or not isinstance(res, dict) or key not in merged:
            if rec.get("kind") == "endpoint" and isinstance(res, dict):
                merged[key] = rec = dict(rec, result=dict(res), turns=1)
            out.append(rec)
            continue
        into = merged[key]
        acc = into["result"]
        into["turns"] += 1
        into["t0"], into["t1"] = min(into["t0"], rec["t0"]), max(into["t1"], rec["t1"])
        for k in ("requests", "duration_s"):
            acc[k] = (acc.get(k) or 0) + (res.get(k) or 0)
        for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"):
            if res.get(k) is not None:
                acc[k] = max(acc.get(k) or 0, res[k])
        for k in ("statuses", "socket_errors"):
            total = dict(acc.get(k) or {})
            for code, n in (res.get(k) or {}).items():
                total[code] = total.get(code, 0) + n
            acc[k] = total
        acc["rps"] = acc["requests"] / acc["duration_s"] if acc.get("duration_s") else None
    return out


class Run:
    def __init__(self, workdir: str):
        self.records = []
        with open(os.path.join(workdir, "results.jsonl"), encoding="utf-8") as fh:
            self.records = [json.loads(line) for line in fh if line.strip()]
        with open(os.path.join(workdir, "meta.json"), encoding="utf-8") as fh:
            self.meta = json.load(fh)
        self.samples = load_rss(workdir)
        self.records = merge_repeats(self.records)

    def find(self, store, phase, kind, conns=None):
        for rec in self.records:
            if rec.get("store") == store and rec.get("phase") == phase and rec.get("kind") == kind \
                    and (conns is None or rec.get("conns") == conns):
                return rec
        return None

    def result(self, store, phase, kind, conns=None) -> dict:
        rec = self.find(store, phase, kind, conns)
        return (rec or {}).get("result") or {}


def build(run: Run):
    meta = run.meta
    stores = [s for s in meta.get("stores", []) if any(r.get("store") == s for r in run.records)]
    conns_list = meta.get("connections", [])
    rows, targets = [], []

    def row_for(store, phase, conns):
        kind = "health" if phase in HEALTH_PHASES else "endpoint"
        rec = run.find(store, phase, kind, conns)
        if rec is None:
            return None
        res = rec.get("result") or {}
        label, expected = ENDPOINTS[phase]
        statuses, errors = fmt_statuses(res, expected) if res else ("**no result**", 1)
        health = run.result(store, "rooms_health" if phase in ROOM_PHASES else "health", "health", conns).get("rps")
        pg_phase, pg_label = PGBENCH_OF.get(phase, (None, None))
        pg = run.result(store, pg_phase, "pgbench") if pg_phase else {}
        rps = res.get("rps")
        return {
            "store": store, "phase": phase, "label": label, "conns": conns, "rps": rps,
            "p50": res.get("p50_ms"), "p99": res.get("p99_ms"), "max": res.get("max_ms"),
            "statuses": statuses, "errors": errors, "health": health,
            "r_h": rps / health if rps and health else None,
            "pg": pg.get("rps"), "pg_max": pg.get("max_ms"), "pg_label": pg_label, "pg_failed": pg.get("failed") or 0,
            "r_g": rps / pg["rps"] if rps and pg.get("rps") else None,
            "rss": peak_rss(run.samples, rec["t0"], rec["t1"]),
            "other": other_load(rec, meta), "wrapped": (res.get("extra") or {}).get("wrapped"),
        }

    for store in stores:
        for phase in ENDPOINTS:
            for conns in conns_list:
                r = row_for(store, phase, conns)
                if r:
                    rows.append(r)
    by = {(r["store"], r["phase"], r["conns"]): r for r in rows}

    def ratio_target(name, r, ratio_key, ceiling_key, want, ceiling_name):
        if r is None:
            return
        ratio = r[ratio_key]
        met = ratio is not None and ratio >= want and r["errors"] == 0
        detail = (f"{fmt_num(r['rps'])} vs {fmt_num(r[ceiling_key])} = {fmt_num(ratio, 2) if ratio else '–'}"
                  + (f", **{r['errors']:,} unexpected responses**" if r["errors"] else ""))
        targets.append((f"{name}: ≥ {want} × {ceiling_name}", met, detail))

    for conns in conns_list:
        if "postgres" in stores:
            ratio_target(f"issue on PostgreSQL, {conns} conns", by.get(("postgres", "issue", conns)), "r_g", "pg",
                         ISSUE_PG_RATIO, f"pgbench plain INSERT ({meta.get('pool')} clients)")
        if "redis" in stores:
            ratio_target(f"issue on Redis, {conns} conns", by.get(("redis", "issue", conns)), "r_h", "health",
                         ISSUE_REDIS_RATIO, "/health/live")
    for store in stores:
        for conns in conns_list:
            r = by.get((store, "poll_1m", conns))
            ratio_target(f"poll, 1,000,000 waiting, {meta.get('poll_distinct', 0):,} tokens, {STORE_LABEL[store]}, "
                         f"{conns} conns", r, "r_h", "health", POLL_RATIO, "/health/live")
            small = by.get((store, "poll_1k", conns))
            if r and small and r["p99"] and small["p99"]:
                f = r["p99"] / small["p99"]
                targets.append((f"poll p99 at 1,000,000 ≤ {POLL_P99_FACTOR} × at 1,000, {STORE_LABEL[store]}, "
                                f"{conns} conns", f <= POLL_P99_FACTOR,
                                f"{fmt_ms(r['p99'])} ms vs {fmt_ms(small['p99'])} ms = {f:.2f}×"))
    for store in stores:
        for phase in ("reserve", "charge"):
            for conns in conns_list:
                ratio_target(f"{phase}, {STORE_LABEL[store]}, {conns} conns", by.get((store, phase, conns)), "r_g",
                             "pg", WRITE_RATIO, f"pgbench of its SQL ({meta.get('pool')} clients)")
    def verify_ceiling(store, off_rps):
        # Each issue verifies a JWT never seen before: one signature check per request, on the
        # same cores. With X µs of machine CPU per issue with identity off and V per check, no
        # server can do better than X / (X + V) (run.sh, identity_verify_ceiling).
        v = run.result(store, "identity_verify", "ceiling").get("verify_per_s")
        if not v or not off_rps:
            return ""
        x = meta.get("nproc", 1) * 1e6 / off_rps
        cost = 1e6 / v
        return (f"; one {meta.get('identity_alg', 'ES256')} verification costs {cost:.0f} µs on one core "
                f"(openssl speed, same run) against {x:.0f} µs of machine CPU per issue with identity off: "
                f"verification alone caps the ratio at {x / (x + cost):.2f}")

    for store in stores:
        for what, label in IDENTITY_OF.items():
            for conns in conns_list:
                on = by.get((store, f"identity_{what}_on", conns))
                off = by.get((store, f"identity_{what}_off", conns))
                if on is None and off is None:
                    continue
                met, detail = paired(on, off, IDENTITY_RATIO)
                if what == "issue" and off:
                    detail += verify_ceiling(store, off["rps"])
                targets.append((f"{label} with identity on, {STORE_LABEL[store]}, {conns} conns: ≥ {IDENTITY_RATIO} "
                                f"× the same with identity off, same run", met, detail))
    for store in stores:
        for conns in conns_list:
            tail = [r for r in rows if r["store"] == store and r["conns"] == conns and r["phase"] != "health"
                    and r["phase"] not in ROOM_PHASES and r["phase"] not in MOVING_PHASES]
            if not tail:
                continue
            bad = []
            for r in tail:
                why = []
                if r["p50"] and r["p99"] and r["p99"] > TAIL_FACTOR * r["p50"]:
                    why.append(f"p99 {r['p99'] / r['p50']:.1f} × p50")
                if r["max"] is not None and r["max"] > TAIL_MAX_MS:
                    why.append(f"max {fmt_ms(r['max'])} ms")
                if why:
                    bad.append(f"{r['label']}: {', '.join(why)}")
            worst = max(tail, key=lambda r: r["max"] or 0)
            targets.append((f"tail, {STORE_LABEL[store]}, {conns} conns: every endpoint's p99 ≤ {TAIL_FACTOR:.0f} × "
                            f"p50 and max ≤ {TAIL_MAX_MS:.0f} ms", not bad,
                            "; ".join(bad) if bad else
                            f"worst max {fmt_ms(worst['max'])} ms ({worst['label']}), worst p99/p50 "
                            f"{max((r['p99'] / r['p50']) for r in tail if r['p50'] and r['p99']):.1f}"))

    for store in stores:
        label = STORE_LABEL[store]
        rec = run.find(store, "moving", "tick100k")
        if rec is not None:
            res = rec.get("result") or {}
            ticks = res.get("ticks_ms") or []
            worst = res.get("max_ms")
            targets.append((f"one admission tick of 100,000 tokens, {label}: < {TICK_100K_MAX_MS:.0f} ms (the scheduler "
                            f"pass, as scheduler_tick_duration_seconds records it)",
                            bool(ticks) and worst is not None and worst < TICK_100K_MAX_MS,
                            (f"{len(ticks)} ticks of 100,000: " + ", ".join(f"{fmt_ms(t)} ms" for t in ticks))
                            if ticks else "**no tick of 100,000 seen**"))
        for conns in conns_list:
            still, moving = by.get((store, "moving_issue_still", conns)), by.get((store, "moving_issue_moving", conns))
            if still or moving:
                targets.append((f"issue with admission of everyone every second, {label}, {conns} conns: ≥ "
                                f"{MOVING_ISSUE_RATIO} × the same with the line standing still, same run",
                                *paired(moving, still, MOVING_ISSUE_RATIO)))
            polls = [by.get((store, f"moving_{w}_{m}", conns)) for w in ("waiting", "active") for m in ("still", "moving")]
            polls = [r for r in polls if r]
            if not polls:
                continue
            bad, parts = [], []
            for r in polls:
                why = []
                if r["p50"] and r["p99"] and r["p99"] > max(MOVING_TAIL_FACTOR * r["p50"], MOVING_TAIL_FLOOR_MS):
                    why.append(f"p99 {fmt_ms(r['p99'])} ms = {r['p99'] / r['p50']:.1f} × p50")
                if r["max"] is None or r["max"] >= MOVING_TAIL_MAX_MS:
                    why.append(f"max {fmt_ms(r['max'])} ms")
                if r["errors"]:
                    why.append(f"{r['errors']:,} unexpected responses")
                if why:
                    bad.append(f"{r['label']}: {', '.join(why)}")
                parts.append(f"{r['label'].replace('poll of ', '')} p50/p99/max {fmt_ms(r['p50'])}/{fmt_ms(r['p99'])}/"
                             f"{fmt_ms(r['max'])} ms")
            targets.append((f"polls of WAITING and ACTIVE tokens, line moving or not, {label}, {conns} conns: p99 ≤ "
                            f"{MOVING_TAIL_FACTOR:.0f} × p50 (or ≤ {MOVING_TAIL_FLOOR_MS:.0f} ms), max < "
                            f"{MOVING_TAIL_MAX_MS:.0f} ms", not bad and len(polls) == 4,
                            "; ".join(bad) if bad else "; ".join(parts)))

    funnels = []
    for store in stores:
        rec = run.find(store, "funnel", "endpoint")
        if rec is None:
            continue
        res = rec.get("result") or {}
        extra = res.get("extra") or {}
        statuses, errors = fmt_statuses(res, FUNNEL_EXPECTED) if res else ("**no result**", 1)
        inv = run.find(store, "funnel", "invariants")
        ok = bool(extra.get("funnels")) and errors == 0 and inv is not None and inv.get("ok")
        funnels.append({"store": store, "conns": rec.get("conns"), "res": res, "extra": extra, "statuses": statuses,
                        "rss": peak_rss(run.samples, rec["t0"], rec["t1"]), "other": other_load(rec, meta)})
        targets.append((f"purchase funnel on {STORE_LABEL[store]}, invariants after it", ok,
                        f"{extra.get('funnels', 0):,} purchases, {extra.get('funnels_failed', 0):,} abandoned"
                        + (f", **{errors:,} unexpected responses**" if errors else "")
                        + (", invariants hold" if inv and inv.get("ok") else ", **invariants FAILED**")))

    targets.extend(room_targets(run, stores, conns_list, by))

    invs = [r for r in run.records if r.get("kind") == "invariants"]
    failed = [r for r in invs if not r.get("ok")]
    targets.append((f"invariants after every write phase ({len(invs)} checks)", bool(invs) and not failed,
                    "; ".join(f"{r['store']} {r['phase']}: {r.get('detail')}" for r in failed) or "all hold"))
    crashes = [r for r in run.records if r.get("kind") == "crash"]
    targets.append(("the server stays up", not crashes,
                    "; ".join(f"died during {c['store']} {c['phase']} ({c.get('detail')})" for c in crashes) or "it did"))
    return rows, funnels, targets


def room_targets(run: Run, stores, conns_list, by) -> list:
    """The targets of the rooms phases (bench/run.sh, "rooms")."""
    meta, targets = run.meta, []
    rooms, line = meta.get("rooms", 0), meta.get("room_line", 0)
    for store in stores:
        label = STORE_LABEL[store]
        for conns in conns_list:
            r = by.get((store, "rooms_poll", conns))
            if r is None:
                continue
            met = r["r_h"] is not None and r["r_h"] >= ROOMS_POLL_RATIO and r["errors"] == 0
            targets.append((f"poll over {rooms:,} rooms × {line:,} waiting, {meta.get('rooms_poll_distinct', 0):,} tokens, "
                            f"{label}, {conns} conns: ≥ {ROOMS_POLL_RATIO} × /health/live (rooms server, same run)", met,
                            f"{fmt_num(r['rps'])} vs {fmt_num(r['health'])} = {fmt_num(r['r_h'], 2) if r['r_h'] else '–'}"
                            + (f", **{r['errors']:,} unexpected responses**" if r["errors"] else "")))
        rec = run.find(store, "rooms", "lateness")
        if rec is not None:
            res = rec.get("result") or {}
            check = res.get("check_ms")
            met = bool(res.get("admissions")) and res.get("max_ms") is not None and res["max_ms"] <= check
            targets.append((f"admissions of {res.get('rooms', 0):,} rooms ({rec.get('batch')} every {rec.get('interval_s')} s) "
                            f"over {rec.get('window_s')} s, {label}: each at most one scheduler check ({check:.0f} ms) "
                            f"after it is due", met,
                            f"{res.get('admissions', 0):,} admissions: lateness max {fmt_ms(res.get('max_ms'))} ms "
                            f"({res.get('worst_room')}), p99 {fmt_ms(res.get('p99_ms'))} ms, p50 "
                            f"{fmt_ms(res.get('p50_ms'))} ms, {res.get('over_check', 0)} over; operator view read p50 "
                            f"{fmt_ms(res.get('view_p50_ms'))} ms, max {fmt_ms(res.get('view_max_ms'))} ms"))
        for conns in conns_list:
            on, off = by.get((store, "abandon_on", conns)), by.get((store, "abandon_off", conns))
            if on is None and off is None:
                continue
            targets.append((f"polls with abandonment on (abandonAfterSecs 30), {label}, {conns} conns: ≥ {ABANDON_RATIO} × "
                            f"the same room without it, same run", *paired(on, off, ABANDON_RATIO)))
        rec = run.find(store, "draw", "draw")
        if rec is not None:
            check = rec.get("check") or {}
            limit = rec.get("limit_s")
            seen = rec.get("seen_s")
            met = (rec.get("recorded") and seen is not None and seen <= limit and rec.get("entrants") == rec.get("loaded")
                   and check.get("checked", 0) > 0 and check.get("wrong", 1) == 0)
            targets.append((f"draw of {rec.get('loaded', 0):,} pre-queued entrants, {label}: every position exact within "
                            f"{limit} s of the opening", bool(met),
                            (f"shown in the operator view {seen:.1f} s after the opening (its `draw.at` "
                             f"{rec.get('at_s'):+.1f} s), {rec.get('entrants') or 0:,} entrants; "
                             if seen is not None else "**no draw recorded**; ")
                            + f"{check.get('exact', 0):,} of {check.get('checked', 0):,} sampled positions as "
                              f"`concert draw-order` places them"
                            + (f"; **{check['wrong']} wrong**, e.g. {check.get('examples', [''])[0]}" if check.get("wrong") else "")
                            + (f"; the first polls of 100 other entrants right after the draw: p50 "
                               f"{fmt_ms(first.get('poll_p50_ms'))} ms, max {fmt_ms(first.get('poll_max_ms'))} ms"
                               if (first := rec.get("first_polls") or {}).get("checked") else "")
                            + (f"; from 2 s before the opening to the draw shown ({cpu['wall_s']:.1f} s, "
                               f"{2 * cpu['wall_s']:.0f} CPU-s on 2 cores) the CPU went to: this server "
                               f"{cpu['server_s']:.1f} s, Redis {cpu['redis_s']:.1f} s, all processes "
                               f"{cpu['machine_s']:.1f} s" if (cpu := rec.get("cpu") or {}).get("wall_s") else "")))
            r = run.find(store, "draw_poll", "endpoint")
            res = (r or {}).get("result") or {}
            statuses, errors = fmt_statuses(res, {200}) if res else ("**no result**", 1)
            p99 = res.get("p99_ms")
            targets.append((f"polls during the draw, {label}, {(r or {}).get('conns')} conns: p99 < {DRAW_POLL_P99_MS:.0f} ms",
                            p99 is not None and p99 < DRAW_POLL_P99_MS and errors == 0,
                            f"p99 {fmt_ms(p99)} ms, max {fmt_ms(res.get('max_ms'))} ms, {fmt_num(res.get('rps'))} req/s "
                            f"from 2 s before the opening to 1 s after the draw was shown; {statuses}"))
        rec = run.find(store, "tick", "tick")
        if rec is not None:
            res = rec.get("result") or {}
            ticks = res.get("ticks") or []
            worst = max((t["pass_ms"] for t in ticks), default=None)
            met = bool(ticks) and worst < TICK_MAX_MS
            skipped = sum(t["abandoned"] for t in ticks)
            admitted = sum(t["admitted"] for t in ticks)
            targets.append((f"an admission tick skipping about 9 absent per present one in a line of "
                            f"{rec.get('line', 0):,}, {label}: < {TICK_MAX_MS:.0f} ms", met,
                            f"{len(ticks)} ticks of N = 100: {admitted:,} admitted, {skipped:,} skipped; "
                            f"the scheduler pass running each (every room's check included) max {fmt_ms(worst)} ms, "
                            f"median {fmt_ms(sorted(t['pass_ms'] for t in ticks)[len(ticks) // 2]) if ticks else '–'} ms; "
                            f"passes without it median {fmt_ms(res.get('other_p50_ms'))} ms"))
    return targets


def render_table(run: Run, rows, funnels, targets) -> str:
    meta = run.meta
    out = []
    out.append(f"Run {meta.get('date')} on {meta.get('machine')}. Connections {', '.join(map(str, meta.get('connections', [])))}"
               f" (wrk, {meta.get('wrk_threads')} threads); the server's `DATABASE_POOL_SIZE` and pgbench's clients "
               f"{meta.get('pool')}; {meta.get('endpoint_secs')} s per endpoint, {meta.get('health_secs')} s "
               f"/health/live, {meta.get('pgbench_secs')} s per pgbench ceiling (-M prepared). Whole run "
               f"{meta.get('total_secs')} s."
               + (f" Identity on: {meta.get('identity_alg')} JWTs of a local issuer, one per user, "
                  f"verified on every request; identity off: the same requests without one."
                  if any(r["phase"].startswith("identity_") for r in rows) else ""))
    out.append("")
    out.append("| store | endpoint | conns | req/s | p50 ms | p99 ms | max ms | responses (unexpected in bold) | "
               "÷ /health/live | pgbench tx/s | pgbench max ms | ÷ pgbench | RSS MB | other load % |")
    out.append("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        pg = fmt_num(r["pg"]) + (f" ({r['pg_label']})" if r["pg"] and r["pg_label"] != "its SQL" else "")
        if r["pg_failed"]:
            pg += f" (**{r['pg_failed']} failed**)"
        out.append(
            f"| {STORE_LABEL[r['store']]} | {r['label']} | {r['conns']} | {fmt_num(r['rps'])} | {fmt_ms(r['p50'])} | "
            f"{fmt_ms(r['p99'])} | {fmt_ms(r['max'])} | {r['statuses']} | "
            f"{'–' if r['phase'] in HEALTH_PHASES else fmt_num(r['r_h'], 2)} | {pg} | {fmt_ms(r['pg_max'])} | "
            f"{fmt_num(r['r_g'], 2)} | "
            f"{fmt_num(r['rss'], 1)} | {fmt_num(r['other'])} |")
    out.append("")
    for f in funnels:
        res, extra = f["res"], f["extra"]
        out.append(f"- Purchase funnel on {STORE_LABEL[f['store']]} ({f['conns']} "
                   f"connections, each interleaving up to 16 buyers): {extra.get('funnels', 0):,} purchases "
                   f"({fmt_num(extra.get('ops_rps'), 1)}/s; from issue to paid p50 {fmt_ms(extra.get('ops_p50_ms'))} ms, "
                   f"p99 {fmt_ms(extra.get('ops_p99_ms'))} ms, mostly waiting for the next admission tick), "
                   f"{extra.get('funnels_failed', 0):,} abandoned, {extra.get('seat_conflicts', 0):,} seat conflicts "
                   f"retried; {fmt_num(res.get('rps'))} requests/s, request p50 {fmt_ms(res.get('p50_ms'))} ms, "
                   f"p99 {fmt_ms(res.get('p99_ms'))} ms, max {fmt_ms(res.get('max_ms'))} ms; {f['statuses']}.")
    for rec in run.records:
        if rec.get("kind") == "cache":
            grown = rec["rss_after_mb"] - rec["rss_before_mb"]
            where = {"rooms_poll": ", rooms server (rooms' lines)"}.get(rec.get("phase"), "")
            out.append(f"- Poll cache on {STORE_LABEL[rec['store']]}{where}: {rec['tokens']:,} distinct WAITING tokens polled "
                       f"once in {rec['secs']} s to fill it; server RSS {rec['rss_before_mb']:.1f} → "
                       f"{rec['rss_after_mb']:.1f} MB ({max(grown, 0) * 1048576 / max(rec['tokens'], 1):.0f} bytes "
                       f"per cached token).")
        if rec.get("kind") == "redis_memory":
            per = (rec["mb"] - rec.get("mb_before", 0)) * 1048576 / max(rec.get("added", rec["line"]), 1)
            out.append(f"- Redis `used_memory` with {rec['line']:,} waiting (and the bench's ACTIVE tokens): "
                       f"{rec['mb']:.0f} MB, {per:.0f} bytes per waiting token.")
    peaks = [r.get("kb", 0) / 1024 for r in run.records if r.get("kind") == "hwm"]
    if peaks:
        out.append(f"- Server peak RSS (kernel high-water mark) over its life: {max(peaks):.1f} MB.")
    wrapped = [r for r in rows if r["wrapped"] and r["phase"] in ("pay", "reserve", "identity_issue_on",
                                                                    "identity_issue_off")]
    for r in wrapped:
        out.append(f"- {STORE_LABEL[r['store']]} {r['label']} at {r['conns']}: the prepared data ran out and was "
                   f"reused {r['wrapped']:.0f} times (the reused requests answer 4xx, or 200 for an issue).")
    noisy = sorted({f"{STORE_LABEL[r['store']]} {r['label']} ({r['conns']})" for r in rows
                    if r["other"] is not None and r["other"] >= 10})
    if noisy:
        out.append(f"- Other work on the machine took 10 % of its CPU or more during: {', '.join(noisy)}; "
                   "those figures are less certain.")
    out.append("")
    out.append("Targets:")
    out.append("")
    for name, met, detail in targets:
        out.append(f"- {'met' if met else '**MISSED**'}: {name} ({detail})")
    return "\n".join(out)


def replace_block(doc_path: str, block: str) -> None:
    text = ""
    if os.path.exists(doc_path):
        with open(doc_path, encoding="utf-8") as fh:
            text = fh.read()
    new_block = f"{MARK_START}\n{block}\n{MARK_END}"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        _, tail = rest.split(MARK_END, 1)
        text = head + new_block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + new_block + "\n"
    with open(doc_path, "w", encoding="utf-8") as fh:
        fh.write(text)


def render(workdir: str, doc_path: str) -> int:
    run = Run(workdir)
    rows, funnels, targets = build(run)
    table = render_table(run, rows, funnels, targets)
    print(table)
    replace_block(doc_path, f"{table}\n\nMachine: {run.meta.get('machine_detail', run.meta.get('machine'))}.")
    invariants_ok = all(r.get("ok") for r in run.records if r.get("kind") == "invariants")
    return 0 if invariants_ok else 2


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "pgbench":
        print(json.dumps(pgbench_summary(argv[1], argv[2])))
        return 0
    if len(argv) >= 3 and argv[0] == "cpu":
        print(cpu_snapshot(int(argv[1] or 0), int(argv[2]), *(int(p) for p in argv[3:] if p and p != "0")))
        return 0
    if len(argv) == 3 and argv[0] == "render":
        return render(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
