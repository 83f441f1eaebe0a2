"""Prepares a running `concert` for schemathesis (called by run.sh).

Takes a place in line and waits until the scheduler admits it (an ACTIVE queue token), holds a
seat with it, and writes a schemathesis config: the committed `schemathesis.toml` (credentials
per security scheme, read from the environment) plus dictionaries of ids that exist, so that
generated requests reach the handlers' real paths (a concert with schedules, a held
reservation, a seat of a schedule) as well as the not-found and malformed ones.

The token's user is never charged, so any payment schemathesis makes with the token is refused
(402) and the token stays ACTIVE for the whole run.

With identity on (ISSUER_DIR and AUDIENCE given: the local issuer of issuer.py that the server
trusts), the token's user joins the line with a JWT of its own, and a second user, the one with
money, is the user schemathesis acts as: its JWT is the `identity` credential (the config reads
it from CONCERT_IDENTITY_TOKEN), and its id is the one the `user` dictionary offers.

Usage: prepare.py BASE_URL TEMPLATE_TOML OUT_TOML [ISSUER_DIR AUDIENCE]; prints the queue token
on stdout and, with identity on, the identity JWT on a second line.
Standard library only, and issuer.py (cryptography) with identity on.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid


def call(base, method, path, body=None, token=None, identity=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None or identity is not None:
        req.add_header("Authorization", "Bearer " + (token or identity))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def expect(status, body, want, what):
    if status != want:
        sys.exit(f"prepare.py: {what} answered {status} (wanted {want}): {body}")
    return body


def toml_list(values):
    return "[" + ", ".join(json.dumps(str(v)) for v in values) + "]"


def main():
    base, template, out = sys.argv[1:4]
    user = str(uuid.uuid4())
    # Another user with money, whose charges and history schemathesis may exercise.
    rich = str(uuid.uuid4())
    jwt_of = {}
    if len(sys.argv) == 6:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from issuer import Minter  # noqa: PLC0415 (cryptography is needed with identity on only)

        minter = Minter(sys.argv[4], sys.argv[5], ttl=3 * 3600)
        jwt_of = {u: minter.jwt(u) for u in (user, rich)}
    elif len(sys.argv) != 4:
        sys.exit(__doc__)
    status, issued = call(base, "POST", "/queue/tokens", {"userId": user}, identity=jwt_of.get(user))
    token = expect(status, issued, 201, "POST /queue/tokens")["token"]
    deadline = time.monotonic() + 30
    while True:
        body = expect(*call(base, "GET", "/queue/token", token=token), 200, "GET /queue/token")
        if body["status"] == "ACTIVE":
            break
        if time.monotonic() > deadline:
            sys.exit(f"prepare.py: the token is still {body['status']} after 30 s")
        time.sleep(0.1)

    concerts = expect(*call(base, "GET", "/concerts", token=token), 200, "GET /concerts")
    concert = concerts[0]["id"]
    schedules = expect(
        *call(base, "GET", f"/concerts/{concert}/schedules", token=token), 200, "GET /concerts/{id}/schedules"
    )
    schedule = schedules[0]["id"]
    seats = expect(*call(base, "GET", f"/schedules/{schedule}/seats", token=token), 200, "GET /schedules/{id}/seats")
    held = expect(
        *call(base, "POST", "/reservations", {"scheduleId": schedule, "seatId": seats[0]["id"]}, token=token),
        201,
        "POST /reservations",
    )
    expect(
        *call(base, "POST", f"/users/{rich}/balance/charge", {"amount": 1_000_000}, identity=jwt_of.get(rich)),
        200,
        "charge",
    )

    # A quarter of generated values stay random (malformed, unknown), the rest are real.
    probability = 0.75
    extra = f"""
# ---- written by prepare.py: ids that exist in this server ----
[dictionaries.concert]
values = {toml_list([concert])}

[dictionaries.schedule]
values = {toml_list([s["id"] for s in schedules])}

[dictionaries.seat]
values = {toml_list([s["id"] for s in seats[:10]])}

[dictionaries.reservation]
values = {toml_list([held["id"]])}

[dictionaries.user]
values = {toml_list([rich])}

[dictionaries.slug]
values = {toml_list(["seat-unavailable", "not-found", "invalid-request", "token-missing", "unavailable"])}

[dictionaries.asset]
values = {toml_list(["app.js", "style.css", "favicon.svg"])}

[dictionaries.docfile]
values = {toml_list(["index.html", "swagger-ui.css", "swagger-initializer.js"])}

[parameters]
"path.concertId" = {{ dictionary = "concert", probability = {probability} }}
"path.scheduleId" = {{ dictionary = "schedule", probability = {probability} }}
"path.reservationId" = {{ dictionary = "reservation", probability = {probability} }}
"path.userId" = {{ dictionary = "user", probability = {probability} }}
"path.slug" = {{ dictionary = "slug", probability = {probability} }}
"body.scheduleId" = {{ dictionary = "schedule", probability = {probability} }}
"body.seatId" = {{ dictionary = "seat", probability = {probability} }}
"body.reservationId" = {{ dictionary = "reservation", probability = {probability} }}
"body.userId" = {{ dictionary = "user", probability = {probability} }}
"""
    # `file` names a page asset in one path and a docs file in the other.
    extra += f"""
[[operations]]
include-path = "/assets/{{file}}"
parameters = {{ "path.file" = {{ dictionary = "asset", probability = {probability} }} }}

[[operations]]
include-path = "/docs/{{file}}"
parameters = {{ "path.file" = {{ dictionary = "docfile", probability = {probability} }} }}
"""
    if jwt_of:
        extra += """
# The user schemathesis acts as on the routes that need a signed identity.
[auth.openapi.identity]
bearer = "${CONCERT_IDENTITY_TOKEN}"
"""
    with open(template, encoding="utf-8") as f:
        text = f.read()
    with open(out, "w", encoding="utf-8") as f:
        f.write(text + extra)
    print(token)
    if jwt_of:
        print(jwt_of[rich])


if __name__ == "__main__":
    main()
