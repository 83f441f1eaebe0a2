#!/usr/bin/env bash
# API fuzz test: schemathesis against /openapi.json of the real `concert` binary, every
# operation, with a queue token that is ACTIVE (and the operator token for /admin/*), so that
# authenticated calls get past 401 and reach the handlers. Fails on any failure of the
# server-error, status-code, content-type and response-schema checks.
#
# With API_TEST_IDENTITY=on the binary runs with signed identities (AUTH_ISSUER) against a local
# issuer (issuer.py: a discovery document and a JWKS on a free loopback port), and schemathesis
# gets the JWT of one user for the `identity` scheme; that user's id is the one the balance
# paths and the issue body name most of the time (the others answer 403 or 400).
#
# Builds nothing: it tests the binary it is given. Needs `pip install -r tests/api/requirements.txt`.
#
#   CONCERT_BIN        the binary to test        ($CARGO_TARGET_DIR/debug/concert, else target/debug/concert)
#   API_TEST_STORE     postgres | memory         (postgres: a fresh database, dropped at the end)
#   API_TEST_PG        the PostgreSQL server     (postgres://postgres@127.0.0.1:5432)
#   API_TEST_EXAMPLES  test cases per operation  (100)
#   API_TEST_SEED      schemathesis seed         (random; printed, so a failure can be replayed)
#   API_TEST_IDENTITY  off | on                  (off: the service trusts the userId it is sent)
#
# Extra arguments go to `st run` (e.g. --include-path /payments).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

CONCERT_BIN="$(abs "${CONCERT_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/concert}")"
STORE="${API_TEST_STORE:-postgres}"
PG="${API_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
EXAMPLES="${API_TEST_EXAMPLES:-100}"
SEED="${API_TEST_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
IDENTITY="${API_TEST_IDENTITY:-off}"
REPORT_DIR="$root/target/api-report"
[[ "$IDENTITY" == on ]] && REPORT_DIR="$root/target/api-report/identity-on"
CHECKS="${API_TEST_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}"

fail() { echo "tests/api/run.sh: $*" >&2; exit 2; }
[[ -x "$CONCERT_BIN" ]] || fail "no executable at CONCERT_BIN=$CONCERT_BIN (build it: cargo build -p app --bin concert)"
command -v st >/dev/null || fail "schemathesis is missing (python3 -m pip install -r tests/api/requirements.txt)"
command -v curl >/dev/null || fail "curl is missing"
case "$IDENTITY" in
    off) ;;
    on) python3 -c 'import cryptography' 2>/dev/null ||
            fail "cryptography is missing (python3 -m pip install -r tests/api/requirements.txt)" ;;
    *) fail "API_TEST_IDENTITY must be off or on, not $IDENTITY" ;;
esac

work="$(mktemp -d)"
server_pid=""
issuer_pid=""
issuer=""
db=""
cleanup() {
    local rc=$?
    if [[ -n "$issuer_pid" ]]; then
        kill "$issuer_pid" 2>/dev/null || true
        wait "$issuer_pid" 2>/dev/null || true
    fi
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [[ -n "$db" ]]; then
        psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if ((rc != 0)) && [[ -s "$work/server.log" ]]; then
        echo "--- last lines of the server's log ---" >&2
        tail -n 40 "$work/server.log" >&2
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT INT TERM

admin_token="api-test-admin-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# Short admission interval (the token is ACTIVE within a second or two), a TTL that outlasts
# the run, and a hold limit high enough that generated holds do not all answer 409.
env_args=(
    ADMIN_TOKEN="$admin_token"
    QUEUE_ADMIT_INTERVAL_SECS=1
    QUEUE_ADMIT_BATCH=1000
    QUEUE_ACTIVE_TTL_SECS=86400
    SCHEDULER_CHECK_MILLIS=100
    ISSUE_RATE_PER_MIN=0
    RUST_LOG=warn
)
# Identity on: a local issuer, trusted for the audience below.
audience="concert-api-test"
if [[ "$IDENTITY" == on ]]; then
    python3 "$here/issuer.py" serve "$work/issuer" >"$work/issuer.out" 2>"$work/issuer.log" &
    issuer_pid=$!
    for _ in $(seq 1 100); do
        [[ -s "$work/issuer.out" ]] && break
        kill -0 "$issuer_pid" 2>/dev/null || { cat "$work/issuer.log" >&2; fail "the local issuer exited at start-up"; }
        sleep 0.1
    done
    issuer="$(head -n 1 "$work/issuer.out")"
    [[ -n "$issuer" ]] || fail "the local issuer did not start"
    env_args+=(AUTH_ISSUER="$issuer" AUTH_AUDIENCE="$audience")
fi

case "$STORE" in
    memory) env_args+=(STORE=memory QUEUE_STORE=postgres) ;;
    postgres)
        db="concert_e2e_api_$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        env_args+=(STORE=postgres QUEUE_STORE=postgres DATABASE_URL="$PG/$db")
        env "${env_args[@]}" "$CONCERT_BIN" seed-demo >"$work/seed.log" 2>&1 || { cat "$work/seed.log" >&2; fail "seed-demo failed"; }
        ;;
    *) fail "API_TEST_STORE must be postgres or memory, not $STORE" ;;
esac

# A free loopback port: bind :0, read the port, let it go. Another process (the local issuer
# binds :0 too) may take it before the server binds it; the server then exits at start-up
# with "Address already in use", and the start is tried again on another port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Starts the server on a free port: 0 once it is ready, 1 when it lost the port (try again),
# and fails the run on any other exit or when it never becomes ready.
start_server() {
    port="$(free_port)"
    base="http://127.0.0.1:$port"
    # `env -i` keeps a developer's DATABASE_URL, ADMIN_TOKEN etc. out of the server.
    env -i PATH="$PATH" HOME="${HOME:-/tmp}" "${env_args[@]}" BIND_ADDR="127.0.0.1:$port" "$CONCERT_BIN" serve \
        >"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "$base/health/ready" 2>/dev/null && return 0
        if ! kill -0 "$server_pid" 2>/dev/null; then
            grep -q "Address already in use" "$work/server.log" && return 1
            fail "the server exited at start-up"
        fi
        sleep 0.1
    done
    fail "the server did not become ready at $base"
}
started=false
for _ in 1 2 3; do
    if start_server; then
        started=true
        break
    fi
    echo "tests/api/run.sh: port $port was taken before the server bound it; trying another" >&2
done
[[ $started == true ]] || fail "the server found no free port in three tries"

# An ACTIVE queue token, a held seat and the ids that exist, written into the config; with
# identity on, also the JWT of the user schemathesis acts as (the second line).
identity_args=()
[[ "$IDENTITY" == on ]] && identity_args=("$work/issuer" "$audience")
prepared="$(python3 "$here/prepare.py" "$base" "$here/schemathesis.toml" "$work/schemathesis.toml" "${identity_args[@]}")" ||
    fail "preparing the server failed"
token="$(sed -n 1p <<<"$prepared")"
identity_token="$(sed -n 2p <<<"$prepared")"
[[ "$IDENTITY" == off || -n "$identity_token" ]] || fail "prepare.py gave no identity token"

echo "concert at $base ($STORE store, identity $IDENTITY${issuer:+ from $issuer}), an ACTIVE token ready; seed $SEED, $EXAMPLES examples per operation"

export CONCERT_QUEUE_TOKEN="$token" CONCERT_ADMIN_TOKEN="$admin_token" CONCERT_IDENTITY_TOKEN="$identity_token"
cd "$here"
st_rc=0
st --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
    --checks "$CHECKS" \
    --max-examples "$EXAMPLES" \
    --seed "$SEED" \
    --workers 2 \
    --request-timeout 10 \
    --generation-database none \
    --report junit --report-dir "$REPORT_DIR" \
    --no-color \
    "$@" || st_rc=$?

# The server must still be serving after the fuzzing.
curl -fsS -o /dev/null "$base/health/live" || { echo "the server stopped answering during the run" >&2; st_rc=1; }
if ((st_rc != 0)); then
    echo "schemathesis found failures (seed $SEED); replay: API_TEST_IDENTITY=$IDENTITY API_TEST_SEED=$SEED $0" >&2
fi
exit "$st_rc"
