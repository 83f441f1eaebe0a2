#!/usr/bin/env python3
"""Summaries and the report of `make bench` (python3 standard library only).

Subcommands:
  pgbench PREFIX STDOUT      -> one JSON object: tps, p50/p99 from the per-transaction log
  render WORKDIR DOC SVG     -> prints the table, writes the SVG chart and replaces the block
                                between the markers in DOC

WORKDIR/results.jsonl has one record per measurement:
  {"phase": P, "kind": "endpoint"|"health"|"pgbench", "t0": s, "t1": s, "result": {...}}
  {"phase": P, "kind": "invariants", "ok": bool, "detail": "..."}
WORKDIR/rss.txt has "epoch_seconds rss_kB" lines; WORKDIR/meta.json the machine and settings.
"""

from __future__ import annotations

import glob
import html
import json
import math
import os
import re
import sys

# phase key -> (label, expected statuses, target kind, target ratio)
#   target kind "health": throughput >= ratio x /health/live; "pgbench": >= ratio x pgbench
PHASES = [
    ("issue", "token issue", {201}, "pgbench", 0.8),
    ("poll_1k", "token poll, 1,000 waiting", {200}, "health", 0.5),
    ("poll_1m", "token poll, 1,000,000 waiting", {200}, "health", 0.5),
    ("seats", "seat map", {200}, "pgbench", 0.5),
    ("reserve_spread", "reserve, spread", {201}, "pgbench", 0.8),
    ("reserve_contended", "reserve, contended", {201, 409}, "pgbench", 0.8),
    ("pay", "pay", {201}, "pgbench", 0.8),
    ("charge", "charge", {200}, "pgbench", 0.8),
    ("funnel", "purchase funnel (purchases/s)", {200, 201, 409}, None, None),
]
RSS_LIMIT_MB = 150.0
POLL_P99_FACTOR = 1.5
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
    return {
        "rps": tps,
        "requests": processed,
        "failed": failed,
        "aborted_clients": aborted,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
    }


# -------------------------------------------------------------------------------------- CPU


def cpu_snapshot(server_pid: int, script_pid: int) -> str:
    """"busy ours" in clock ticks, for the other-load share of a measurement.

    busy: all CPUs' non-idle time (/proc/stat). ours: the server, every PostgreSQL process of
    this cluster (the postmaster's reaped children included, so pgbench's exited backends
    count) and the bench script with everything it ran and reaped (wrk, pgbench, psql). What
    is left is other work on the machine during the measurement.
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
        if int(pid) == server_pid:
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


def load_results(workdir: str) -> list[dict]:
    records = []
    with open(os.path.join(workdir, "results.jsonl"), encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                records.append(json.loads(line))
    return records


def fmt_num(v, digits=0) -> str:
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fmt_ms(v) -> str:
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_statuses(statuses: dict, expected: set[int], socket_errors: dict | None) -> tuple[str, int]:
    parts, errors = [], 0
    for code in sorted(statuses, key=lambda c: int(c)):
        n = statuses[code]
        if not n:
            continue
        if int(code) in expected:
            parts.append(f"{code}×{n:,}")
        else:
            parts.append(f"**{code}×{n:,}**")
            errors += n
    for kind, n in sorted((socket_errors or {}).items()):
        if kind != "status" and n:
            parts.append(f"**{kind}×{n:,}**")
            errors += n
    return (" ".join(parts) or "none"), errors


def other_load(rec: dict | None, meta: dict) -> float | None:
    """Share (%) of the machine's CPU used by other work during one measurement."""
    if not rec or not rec.get("cpu") or len(rec["cpu"]) != 4:
        return None
    b0, o0, b1, o1 = rec["cpu"]
    wall = rec["t1"] - rec["t0"]
    capacity = wall * meta.get("nproc", 1) * meta.get("clk_tck", 100)
    if capacity <= 0:
        return None
    return max(0.0, 100.0 * ((b1 - b0) - (o1 - o0)) / capacity)


def collect(records):
    by_phase: dict[str, dict] = {}
    for rec in records:
        by_phase.setdefault(rec["phase"], {})[rec["kind"]] = rec
    return by_phase


def build(workdir: str):
    records = load_results(workdir)
    with open(os.path.join(workdir, "meta.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    samples = load_rss(workdir)
    by_phase = collect(records)

    rows, targets, chart = [], [], []
    for key, label, expected, tkind, tratio in PHASES:
        ph = by_phase.get(key)
        if not ph or "endpoint" not in ph:
            continue
        ep = ph["endpoint"]
        res = ep.get("result") or {}
        health = (ph.get("health") or {}).get("result") or {}
        pgb = (ph.get("pgbench") or {}).get("result") or {}
        pgu = (ph.get("pgbench_unprepared") or {}).get("result") or {}
        rps, p50, p99 = res.get("rps"), res.get("p50_ms"), res.get("p99_ms")
        note = "" if res else "**the load generator produced no result** (see the run's output)"
        if key == "funnel" and res:
            extra = res.get("extra") or {}
            rps, p50, p99 = extra.get("ops_rps"), extra.get("ops_p50_ms"), extra.get("ops_p99_ms")
            note = (f"{extra.get('funnels', 0):,} purchases, {extra.get('funnels_failed', 0):,} abandoned, "
                    f"{extra.get('seat_conflicts', 0):,} seat conflicts retried; "
                    f"{res.get('rps', 0):,.0f} requests/s, request p50 {fmt_ms(res.get('p50_ms'))} ms / "
                    f"p99 {fmt_ms(res.get('p99_ms'))} ms")
        wrapped = (res.get("extra") or {}).get("wrapped")
        statuses, errors = fmt_statuses(res.get("statuses") or {}, expected, res.get("socket_errors"))
        if not res:
            statuses, errors = "**no result**", 1
        h_rps, g_rps = health.get("rps"), pgb.get("rps")
        # The funnel's HTTP ratio compares requests (not purchases) with /health/live requests.
        req_rps = res.get("rps") if key == "funnel" else rps
        r_h = req_rps / h_rps if req_rps and h_rps else None
        r_g = rps / g_rps if rps and g_rps else None
        t_lo = min(ep["t0"], (ph.get("health") or ep)["t0"], (ph.get("pgbench") or ep)["t0"])
        t_hi = max(ep["t1"], (ph.get("health") or ep)["t1"], (ph.get("pgbench") or ep)["t1"])
        rss = peak_rss(samples, ep["t0"], ep["t1"])
        loads = [other_load(ph.get(k), meta) for k in ("endpoint", "health", "pgbench", "pgbench_unprepared")]
        loads = [x for x in loads if x is not None]
        other = max(loads) if loads else None
        inv = ph.get("invariants")
        inv_s = "–" if inv is None else ("ok" if inv["ok"] else "**FAILED**")
        pg_fail = (pgb.get("failed") or 0) + (pgb.get("aborted_clients") or 0)
        target_s = "–"
        if tkind:
            ratio = r_h if tkind == "health" else r_g
            met = ratio is not None and ratio >= tratio and errors == 0
            name = "/health/live" if tkind == "health" else "pgbench"
            target_s = f"≥ {tratio} × {name}: {'met' if met else '**missed**'}"
            targets.append((f"{label}: throughput ≥ {tratio} × {name}",
                            met, f"{fmt_num(rps)} vs {fmt_num(h_rps if tkind == 'health' else g_rps)}"
                            f" = {fmt_num(ratio, 3) if ratio is not None else '–'}"
                            + (f", {errors:,} unexpected responses" if errors else "")))
        rows.append({
            "key": key, "label": label, "rps": rps, "p50": p50, "p99": p99, "statuses": statuses,
            "errors": errors, "health": h_rps, "pgbench": g_rps, "pg_p99": pgb.get("p99_ms"),
            "pg_fail": pg_fail, "pg_unprepared": pgu.get("rps"),
            "pgu_fail": (pgu.get("failed") or 0) + (pgu.get("aborted_clients") or 0), "r_h": r_h, "r_g": r_g, "rss": rss, "inv": inv_s, "target": target_s,
            "note": note, "wrapped": wrapped, "span": (t_lo, t_hi), "other": other,
        })
        chart.append((label, rps, h_rps, g_rps))

    by_key = {r["key"]: r for r in rows}
    if "poll_1k" in by_key and "poll_1m" in by_key:
        a, b = by_key["poll_1k"]["p99"], by_key["poll_1m"]["p99"]
        met = a is not None and b is not None and b <= POLL_P99_FACTOR * a
        targets.append((f"token poll: p99 at 1,000,000 waiting ≤ {POLL_P99_FACTOR} × p99 at 1,000", met,
                        f"{fmt_ms(b)} ms vs {fmt_ms(a)} ms = {b / a:.2f}×" if a and b else "–"))
    overall = max([mb for _, mb in samples] + [meta.get("rss_hwm_mb") or 0]) if samples else meta.get("rss_hwm_mb")
    if overall is not None:
        targets.append((f"server RSS < {RSS_LIMIT_MB:.0f} MB throughout", overall < RSS_LIMIT_MB,
                        f"peak {overall:.1f} MB (sampled every 100 ms, and the kernel's high-water mark)"))
    crashes = [rec for rec in records if rec.get("kind") == "crash"]
    targets.append(("the server stays up (no crash, no restart)", not crashes,
                    "; ".join(f"died during {c['phase']} ({c.get('detail')}), restarted" for c in crashes)
                    or "it did"))
    invs = [(k, rec) for k, ph in by_phase.items() for kind, rec in ph.items() if kind == "invariants"]
    inv_ok = all(rec["ok"] for _, rec in invs)
    return meta, rows, targets, chart, invs, inv_ok, overall


def render_table(meta, rows, targets, invs, inv_ok, overall) -> str:
    out = []
    c = meta.get("connections")
    out.append(f"Run {meta.get('date')} on {meta.get('machine')}; {c} connections for every endpoint, "
               f"for /health/live and for pgbench (-c {c}, -j 2); wrk {meta.get('wrk_threads')} threads "
               f"({c} for the funnel); {meta.get('endpoint_secs')} s per endpoint, "
               f"{meta.get('health_secs')} s /health/live, {meta.get('pgbench_secs')} s pgbench in each query mode "
               f"per phase. Whole run {meta.get('total_secs')} s. pgbench tx/s is -M prepared (the ceiling, used "
               f"by the targets, and how the server sends its statements); unprepared is -M extended, each statement "
               f"planned on every execution.")
    out.append("")
    out.append("| phase | req/s | p50 ms | p99 ms | responses (errors in bold) | /health/live req/s | "
               "pgbench tx/s | pgbench unprepared tx/s | ÷ health | ÷ pgbench | peak RSS MB | other load % | "
               "invariants | target |")
    out.append("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        pg = fmt_num(r["pgbench"])
        if r["pg_fail"]:
            pg += f" (**{r['pg_fail']} failed**)"
        pgu = fmt_num(r["pg_unprepared"])
        if r["pgu_fail"]:
            pgu += f" (**{r['pgu_fail']} failed**)"
        out.append(
            f"| {r['label']} | {fmt_num(r['rps'])} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | "
            f"{r['statuses']} | {fmt_num(r['health'])} | {pg} | {pgu} | {fmt_num(r['r_h'], 2)} | "
            f"{fmt_num(r['r_g'], 2)} | {fmt_num(r['rss'], 1)} | {fmt_num(r['other'])} | {r['inv']} | "
            f"{r['target']} |")
    out.append("")
    for r in rows:
        if r["note"]:
            out.append(f"- {r['label']}: {r['note']}"
                       + (" (req/s and p50/p99 in the table are whole purchases)." if r["key"] == "funnel" else "."))
        if r["wrapped"] and r["key"] in ("pay", "reserve_spread", "issue"):
            out.append(f"- {r['label']}: the prepared data ran out and was reused {r['wrapped']} times.")
    noisy = [r["label"] for r in rows if r["other"] is not None and r["other"] >= 10]
    if noisy:
        out.append(f"- Other work on the machine took 10 % of its CPU or more during: {', '.join(noisy)}; "
                   "ratios of those phases are less certain (other load % is the largest share in any of "
                   "the phase's four measurements).")
    out.append("")
    out.append("Targets:")
    out.append("")
    for name, met, detail in targets:
        out.append(f"- {'met' if met else '**MISSED**'}: {name} ({detail})")
    out.append(f"- {'met' if inv_ok else '**FAILED**'}: invariants after every write phase "
               f"({len(invs)} checks: no seat with two live reservations, balances equal their ledgers, "
               f"no negative balance)")
    return "\n".join(out)


def render_svg(chart, meta) -> str:
    """Grouped horizontal bars on a log scale: endpoint vs its two ceilings, per phase."""
    values = [v for _, a, b, g in chart for v in (a, b, g) if v]
    if not values:
        values = [1.0]
    lo = 10 ** math.floor(math.log10(max(1.0, min(values))))
    hi = 10 ** math.ceil(math.log10(max(values)))
    left, right, top, bar_h, gap = 230, 40, 60, 11, 14
    width = 900
    plot_w = width - left - right
    height = top + len(chart) * (3 * bar_h + gap) + 60

    def x(v):
        return left + plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    colours = [("endpoint", "#1f77b4"), ("/health/live (HTTP ceiling)", "#ff7f0e"),
               ("pgbench, same SQL (database ceiling)", "#2ca02c")]
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{left}" y="20" font-size="14" font-weight="bold">Throughput against its ceilings '
         f'(requests or transactions per second, log scale)</text>',
         f'<text x="{left}" y="38" fill="#555">{html.escape(str(meta.get("date")))}, '
         f'{html.escape(str(meta.get("machine")))}, {meta.get("connections")} connections</text>']
    decade = lo
    while decade <= hi:
        for m in (1, 2, 5):
            v = decade * m
            if lo <= v <= hi:
                xv = x(v)
                s.append(f'<line x1="{xv:.1f}" y1="{top - 5}" x2="{xv:.1f}" y2="{height - 50}" '
                         f'stroke="{"#bbb" if m == 1 else "#eee"}"/>')
                if m in (1, 5) or hi / lo <= 100:
                    s.append(f'<text x="{xv:.1f}" y="{height - 36}" text-anchor="middle" '
                             f'fill="#555">{v:,.0f}</text>')
        decade *= 10
    y = top
    for label, a, b, g in chart:
        s.append(f'<text x="{left - 8}" y="{y + 1.5 * bar_h + 4:.1f}" text-anchor="end">'
                 f'{html.escape(label)}</text>')
        for i, v in enumerate((a, b, g)):
            yy = y + i * bar_h
            if v:
                s.append(f'<rect x="{left}" y="{yy}" width="{max(1.0, x(v) - left):.1f}" '
                         f'height="{bar_h - 1}" fill="{colours[i][1]}"/>')
                s.append(f'<text x="{x(v) + 4:.1f}" y="{yy + bar_h - 2}" font-size="10" '
                         f'fill="#333">{v:,.0f}</text>')
        y += 3 * bar_h + gap
    lx = left
    for name, colour in colours:
        s.append(f'<rect x="{lx}" y="{height - 22}" width="12" height="12" fill="{colour}"/>')
        s.append(f'<text x="{lx + 16}" y="{height - 12}">{html.escape(name)}</text>')
        lx += 16 + 7 * len(name) + 24
    s.append("</svg>")
    return "\n".join(s) + "\n"


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


def render(workdir: str, doc_path: str, svg_path: str) -> int:
    meta, rows, targets, chart, invs, inv_ok, overall = build(workdir)
    table = render_table(meta, rows, targets, invs, inv_ok, overall)
    print(table)
    with open(svg_path, "w", encoding="utf-8") as fh:
        fh.write(render_svg(chart, meta))
    rel_svg = os.path.relpath(svg_path, os.path.dirname(os.path.abspath(doc_path)))
    block = (f"{table}\n\n![Throughput against the ceilings]({rel_svg})\n\n"
             f"Machine: {meta.get('machine_detail', meta.get('machine'))}.")
    replace_block(doc_path, block)
    return 0 if inv_ok else 2


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "pgbench":
        print(json.dumps(pgbench_summary(argv[1], argv[2])))
        return 0
    if len(argv) == 3 and argv[0] == "cpu":
        print(cpu_snapshot(int(argv[1] or 0), int(argv[2])))
        return 0
    if len(argv) == 4 and argv[0] == "render":
        return render(argv[1], argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
