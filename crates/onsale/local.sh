#!/usr/bin/env bash
# `make onsale`: plays a whole on-sale with the release `onsale` binary.
#
# With ONSALE_BASE_URL set it plays against that service (the local cluster's HAProxy, say)
# with ADMIN_TOKEN as the operator secret and ONSALE_DATABASE_URL, when set, for
# `concert check-invariants`. Without it, it starts a server of its own first: `concert serve`
# on a free loopback port, a fresh PostgreSQL database on the machine's server and the queue on
# the machine's Redis under a key prefix of its own, all removed when it ends (also on Ctrl-C).
#
# Sizes come from ONSALE_BUYERS, ONSALE_JOIN_RATE, ONSALE_SEATS, ONSALE_SALE_SECS,
# ONSALE_MAX_SECS; anything in ONSALE_ARGS is passed on as is (e.g. --chaos "20:cmd").
# The report goes to stdout and $ONSALE_OUT/onsale-report.json, the chart to $ONSALE_OUT/onsale.png.
set -euo pipefail

TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN_DIR=${ONSALE_BIN_DIR:-$TARGET_DIR/release}
OUT=${ONSALE_OUT:-$TARGET_DIR/onsale}
mkdir -p "$OUT"

args=(
    --buyers "${ONSALE_BUYERS:-20000}"
    --join-rate "${ONSALE_JOIN_RATE:-2000}"
    --sale-secs "${ONSALE_SALE_SECS:-60}"
    --max-secs "${ONSALE_MAX_SECS:-600}"
    --json "$OUT/onsale-report.json"
    --png "$OUT/onsale.png"
    --concert-bin "$BIN_DIR/concert"
)
[[ -n ${ONSALE_SEATS:-} ]] && args+=(--seats "$ONSALE_SEATS")
extra=()
[[ -n ${ONSALE_ARGS:-} ]] && eval "extra=($ONSALE_ARGS)"

if [[ -n ${ONSALE_BASE_URL:-} ]]; then
    : "${ADMIN_TOKEN:?set ADMIN_TOKEN to the operator secret of the service}"
    exec "$BIN_DIR/onsale" --base-url "$ONSALE_BASE_URL" "${args[@]}" "${extra[@]}"
fi

PG=${ONSALE_PG:-postgres://postgres@127.0.0.1:5432}
REDIS=${ONSALE_REDIS:-redis://127.0.0.1:6379}
run_id=onsale_$$
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export ADMIN_TOKEN=onsale-local-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
db_url=$PG/$run_id
server_pid=

cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $run_id WITH (FORCE)" >/dev/null 2>&1 || true
    redis-cli -u "$REDIS" --scan --pattern "{$run_id*" | xargs -r -n 500 redis-cli -u "$REDIS" DEL >/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "onsale: serving on 127.0.0.1:$port (database $run_id, Redis prefix $run_id); log in $OUT/serve.log"
DATABASE_URL=$db_url QUEUE_STORE=redis REDIS_URL=$REDIS REDIS_KEY_PREFIX=$run_id BIND_ADDR=127.0.0.1:$port \
    SCHEDULER_CHECK_MILLIS=250 RUST_LOG=warn \
    "$BIN_DIR/concert" serve >"$OUT/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { tail -20 "$OUT/serve.log" >&2; exit 2; }
    sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null || { echo "onsale: the server did not become ready" >&2; exit 2; }

"$BIN_DIR/onsale" --base-url "http://127.0.0.1:$port" --database-url "$db_url" "${args[@]}" "${extra[@]}"
