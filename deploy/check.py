#!/usr/bin/env python3
"""Checks the deployment files with promtool: the alert rules parse and their unit tests pass,
and every query of the Grafana dashboard parses as PromQL (each is checked as a recording rule
of a temporary rules file). Run by `make test-deploy`."""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

root = Path(__file__).resolve().parent


def run(*args: str) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True)


run("promtool", "check", "rules", str(root / "prometheus" / "alerts.yml"))
run("promtool", "test", "rules", str(root / "prometheus" / "alerts.test.yml"))

dashboard = json.loads((root / "grafana" / "concert.json").read_text())
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
if not exprs:
    sys.exit("the dashboard has no queries")
rules = "groups:\n  - name: dashboard\n    rules:\n" + "".join(
    f"      - record: dashboard:panel_{i}\n        expr: {json.dumps(e)}\n" for i, e in enumerate(exprs)
)
with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
    f.write(rules)
    f.flush()
    run("promtool", "check", "rules", f.name)
print(f"{len(exprs)} dashboard queries parse")
