#!/usr/bin/env python3
"""The table of `make bench-cluster` (bench/cluster.sh; python3 standard library only).

  cluster_report.py RESULTS.jsonl   -> prints the measurements and the targets, met or missed

Records are bench/run.sh's ("store", "phase", "kind", "conns", "result" from a wrk script's
BENCH_RESULT line) with "store" naming the side measured: haproxy (through HAProxy to the
reference deployment's instances), one-cluster / one-redis (one instance, REDIS_URL the Redis
Cluster's node list / one Redis), memory (used_memory before and after the line was filled).
Exit status 0 even when targets are missed: a miss is a measurement, not a failure of the run.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import fmt_ms, fmt_num, fmt_statuses, merge_repeats, paired  # noqa: E402

JOIN_RATIO = 0.5
POLL_RATIO = 0.8
CLUSTER_RATIO = 0.8
BYTES_PER_WAITING = 200
LABEL = {"health": "GET /health/live", "poll_waiting": "poll of WAITING", "issue": "issue (join)"}
EXPECTED = {"health": {200}, "poll_waiting": {200}, "issue": {201}}


def side(records, store, phase, conns):
    """One measurement as paired() takes it: rps, p99 and the count of unexpected answers."""
    for rec in records:
        if rec.get("store") == store and rec.get("phase") == phase and rec.get("conns") == conns \
                and rec.get("kind") in ("endpoint", "health"):
            res = rec.get("result") or {}
            _, errors = fmt_statuses(res, EXPECTED[phase]) if res else ("", 1)
            return {"rps": res.get("rps"), "p99": res.get("p99_ms"), "p50": res.get("p50_ms"),
                    "max": res.get("max_ms"), "errors": errors, "res": res, "turns": rec.get("turns", 1)}
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 64
    with open(argv[0], encoding="utf-8") as fh:
        records = merge_repeats([json.loads(line) for line in fh if line.strip()])
    conns_list = sorted({r["conns"] for r in records if r.get("store") == "haproxy" and "conns" in r}, reverse=True)
    one_conns = sorted({r["conns"] for r in records if r.get("store", "").startswith("one-") and "conns" in r})
    targets = []
    out = ["| where | measured | conns | req/s | × ceiling | p50 ms | p99 ms | max ms | answers |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for conns in conns_list:
        health = side(records, "haproxy", "health", conns)
        for phase in ("health", "poll_waiting", "issue"):
            s = side(records, "haproxy", phase, conns)
            if s is None:
                continue
            statuses, _ = fmt_statuses(s["res"], EXPECTED[phase])
            ratio = s["rps"] / health["rps"] if s["rps"] and health and health["rps"] else None
            out.append(f"| HAProxy → 3 instances | {LABEL[phase]} | {conns} | {fmt_num(s['rps'])} | "
                       f"{'ceiling' if phase == 'health' else fmt_num(ratio, 2)} | {fmt_ms(s['p50'])} | "
                       f"{fmt_ms(s['p99'])} | {fmt_ms(s['max'])} | {statuses} |")
        for phase, want in (("issue", JOIN_RATIO), ("poll_waiting", POLL_RATIO)):
            s = side(records, "haproxy", phase, conns)
            if s is None or health is None:
                targets.append((f"through HAProxy, {LABEL[phase]} >= {want} x /health/live at {conns}", False,
                                "not measured"))
                continue
            met, detail = paired(s, health, want)
            targets.append((f"through HAProxy, {LABEL[phase]} >= {want} x /health/live at {conns} connections",
                            met, detail))
    for conns in one_conns:
        for store, label in (("one-cluster", "REDIS_URL = Redis Cluster"), ("one-redis", "REDIS_URL = one Redis")):
            s = side(records, store, "issue", conns)
            if s is None:
                continue
            statuses, _ = fmt_statuses(s["res"], EXPECTED["issue"])
            out.append(f"| one instance, {label} ({s['turns']} turns) | issue (join) | {conns} | {fmt_num(s['rps'])} | "
                       f"{'ceiling' if store == 'one-redis' else ''} | {fmt_ms(s['p50'])} | {fmt_ms(s['p99'])} | "
                       f"{fmt_ms(s['max'])} | {statuses} |")
        a, b = side(records, "one-cluster", "issue", conns), side(records, "one-redis", "issue", conns)
        met, detail = paired(a, b, CLUSTER_RATIO) if a and b else (False, "not measured")
        targets.append((f"one instance, issue on a Redis Cluster >= {CLUSTER_RATIO} x on one Redis at {conns} connections",
                        met, detail))
    mem = next((r for r in records if r.get("kind") == "redis_memory"), None)
    if mem:
        per = (mem["after"] - mem["before"]) / mem["line"] if mem["line"] else None
        out.append("")
        out.append(f"Redis memory: used_memory of the master holding room main's line ({mem['master']}, slot "
                   f"{mem['slot']}) {mem['before'] / 1048576:,.1f} MB -> {mem['after'] / 1048576:,.1f} MB for "
                   f"{mem['line']:,} waiting added (the operator view counts {mem.get('admin_waiting')} waiting).")
        targets.append((f"Redis memory per waiting buyer <= {BYTES_PER_WAITING} bytes",
                        per is not None and per <= BYTES_PER_WAITING,
                        f"{fmt_num(per)} bytes each over {mem['line']:,} waiting"))
    else:
        targets.append((f"Redis memory per waiting buyer <= {BYTES_PER_WAITING} bytes", False, "not measured"))
    meta = next((r for r in records if r.get("kind") == "meta"), {})
    config = next((r for r in records if r.get("kind") == "config"), {})
    out.append("")
    out.append("Targets:")
    for name, met, detail in targets:
        out.append(f"- {'met' if met else '**MISSED**'}: {name} ({detail})")
    out.append("")
    out.append(f"Deployment: {config.get('hosts')} hosts, Redis {config.get('redis')}, ISSUE_RATE_PER_MIN=0 on "
               f"{config.get('issue_rate_zero')} of them, {config.get('trusted_proxies')}. Machine: "
               f"{meta.get('machine')} (load average at the end {meta.get('loadavg')}); measured in {meta.get('secs')} s.")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
