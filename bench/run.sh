#!/usr/bin/env bash
# `make bench`: load-tests the release `concert` binary over loopback, once with the waiting
# queue in PostgreSQL and once in Redis (QUEUE_STORE), each endpoint at 16 and at 64
# connections, and prints one table: throughput and the tail (p50, p99, max) of every endpoint
# beside the ceilings measured in the same run (/health/live under the same load; pgbench
# running the endpoint's SQL), the server's RSS, the invariants after every write phase, and
# the targets of the waiting-room work as met or missed. The table goes into
# docs/benchmarks.md between its markers; docs/benchmarks.md explains the method.
#
# The identity phase measures token issue and balance reads on a second server with signed
# identities on (AUTH_ISSUER: a local issuer, tests/api/issuer.py, serving a discovery document
# and a JWKS on a free loopback port; a JWT per user, minted once per run) beside the same
# requests without a JWT on the main server (identity off), alternating between the two.
#
# Where things run: the binary is $CARGO_TARGET_DIR/release/concert (or target/release/...),
# as `make build` leaves it; PostgreSQL is the local server (database concert_bench, dropped
# and created for each store); Redis is a private redis-server on a free port that this
# script starts and stops (the machine's own Redis is not touched); so is the local issuer of
# the identity phase. Traffic only goes to 127.0.0.1.
#
# Bounds: every measurement is at most BENCH_ENDPOINT_SECS; with the defaults the whole run
# (both stores, both connection counts, data loads included) takes about 8 minutes, and
# phases still pending after BENCH_BUDGET_SECS are skipped loudly.
#
# Settings (environment): BENCH_STORES ("postgres redis"), BENCH_CONNECTIONS ("16 64"),
# BENCH_POOL_SIZE (16: the server's DATABASE_POOL_SIZE, and pgbench's clients), BENCH_PHASES
# (all: health poll_1k poll_1m issue seats reserve pay charge moving identity funnel rooms abandon draw),
# BENCH_ENDPOINT_SECS (5), BENCH_HEALTH_SECS (4), BENCH_PGBENCH_SECS (3), BENCH_LINE (1000000 waiting),
# BENCH_POLL_DISTINCT (200000 tokens polled in the long line), BENCH_WRK_THREADS (2),
# BENCH_DATABASE (concert_bench), BENCH_RUST_LOG (warn), BENCH_BUDGET_SECS (1500),
# BENCH_IDENTITY_ALG (ES256 or EdDSA: the local issuer's key), BENCH_IDENTITY_ISSUES (40,000 per
# second of BENCH_ENDPOINT_SECS: the new users, each with a JWT, of each issue measurement of the
# identity phase with identity on), BENCH_IDENTITY_OFF_ISSUES (100,000 per second: the same
# without JWTs, for the measurements with identity off, which issue faster),
# PGHOST/PGPORT/PGUSER (127.0.0.1/5432/postgres). The server's own variables (HTTP_WORKERS,
# QUEUE_POLL_CACHE_MILLIS, ...) pass through from the environment, except AUTH_*: the bench
# decides which server has identity on.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

STORES=${BENCH_STORES:-"postgres redis"}
CONNS_LIST=${BENCH_CONNECTIONS:-"16 64"}
POOL=${BENCH_POOL_SIZE:-16}
PHASES=${BENCH_PHASES:-"health poll_1k poll_1m issue seats reserve pay charge moving identity funnel rooms abandon draw"}
ENDPOINT_SECS=${BENCH_ENDPOINT_SECS:-5}
HEALTH_SECS=${BENCH_HEALTH_SECS:-4}
PGBENCH_SECS=${BENCH_PGBENCH_SECS:-3}
LINE=${BENCH_LINE:-1000000}
POLL_DISTINCT=${BENCH_POLL_DISTINCT:-200000}
WRK_MAX_THREADS=${BENCH_WRK_THREADS:-2}
BUDGET_SECS=${BENCH_BUDGET_SECS:-1500}
DB=${BENCH_DATABASE:-concert_bench}
SERVER_LOG_LEVEL=${BENCH_RUST_LOG:-warn}
IDENTITY_ALG=${BENCH_IDENTITY_ALG:-ES256}
IDENTITY_ISSUES=${BENCH_IDENTITY_ISSUES:-$((40000 * ENDPOINT_SECS))}
IDENTITY_OFF_ISSUES=${BENCH_IDENTITY_OFF_ISSUES:-$((100000 * ENDPOINT_SECS))}
IDENTITY_AUDIENCE=concert-bench
unset AUTH_ISSUER AUTH_AUDIENCE AUTH_JWKS_URL AUTH_JWKS_REFRESH_SECS AUTH_USER_CLAIM AUTH_PAGE_CLIENT_ID
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
DATABASE_URL_BENCH="postgres://${PGUSER}@${PGHOST}:${PGPORT}/${DB}"

# The catalogue: 120 concerts x 10 schedules x 200 seats = 240,000 seats; the pools of
# schedules and users are listed in bench/sql/prepare.sql.
CONCERTS=120
PER_CONCERT=10
SEATS=200
SCHEDULES=$((CONCERTS * PER_CONCERT))
# Users with an ACTIVE token, in seq order (the Redis store gets the same line). Each token's
# value carries its seq: bench.seq in bench/sql/prepare.sql numbers them the same way (the
# pgbench scripts call it too); keep them in step (check_token_values stops a Redis round
# that differs).
ACTIVE_USERS="1-2000,10001-70000,200001-220000,300001-310000"
# Reserve via HTTP: 80,000 distinct seats (schedules 301..700) over 20,000 users, so that no
# user ever holds more than MAX_HOLDS_PER_USER (4) seats; split between the connection counts.
RESERVE_SEATS=80000
RESERVE_USERS=20000
# Pay via HTTP: users 10001..40000, each paying once, split between the connection counts.
PAY_USERS=30000
# The pgbench ceilings of reserve and pay take their own pools (prepare.sql).
ISSUE_INSERT_SEQBASE=100000000
# Identity: balance reads over users 40001..50000 (a balance each); issues by users of their
# own, from 20,000,001 (identity on) and 30,000,001 (off), a pool per connection count.
IDENTITY_BALANCE_USERS="40001 50000"
IDENTITY_ON_BASE=20000001
IDENTITY_OFF_BASE=30000001

TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BIN="$TARGET_DIR/release/concert"
DOC="$ROOT/docs/benchmarks.md"
LATEST="$ROOT/bench/latest"
WORK=$(mktemp -d /tmp/concert-bench.XXXXXX)
DATA="$WORK/data"
RESULTS="$WORK/results.jsonl"
mkdir -p "$DATA" "$WORK/pgbench" "$LATEST"
: >"$RESULTS"
NONCE=$((RANDOM * 32768 + RANDOM))

STORE=""
CONNS=""
SERVER_PID=""
SAMPLER_PID=""
SERVER_NAME=""
SERVER_ENV=()
SERVER_CRASHES=0
PORT=""
BASE_URL=""
REDIS_PID=""
REDIS_PORT=""
REDIS_PREFIX=""
# The server set aside while the other one is measured (the identity phase runs two).
PARKED_PID=""
PARKED_NAME=""
PARKED_PORT=""
PARKED_ENV=()
ISSUER_PID=""
ISSUER_URL=""
INVARIANT_FAILURES=0
WRK_RUNS=0

log() { printf '\033[1m[bench %3ss]\033[0m %s\n' "$SECONDS" "$*" >&2; }
loud() {
    printf '\n\033[1;31m!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
    printf '!!! %s\n' "$@" >&2
    printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\033[0m\n\n' >&2
}
psql_db() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
wanted() { [[ " $PHASES " == *" $1 "* ]]; }
wrk_threads() { echo $((CONNS < WRK_MAX_THREADS ? CONNS : WRK_MAX_THREADS)); }

# ------------------------------------------------------------------------------------ tools

ensure_tools() {
    if ! command -v wrk >/dev/null 2>&1; then
        log "installing wrk (Debian package)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    fi
    local tool
    for tool in pgbench psql curl python3 wrk redis-server; do
        command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool is required" >&2; exit 1; }
    done
    if wanted identity && ! python3 -c 'import cryptography' 2>/dev/null; then
        log "installing cryptography (PyPI) for the local issuer of the identity phase"
        python3 -m pip install --quiet --disable-pip-version-check \
            "$(grep -m 1 '^cryptography==' "$ROOT/tests/api/requirements.txt" || echo cryptography)"
    fi
    if [[ ! -x "$BIN" ]] || [[ -n "$(find "$ROOT/crates" "$ROOT/migrations" "$ROOT/Cargo.lock" -newer "$BIN" -print -quit)" ]]; then
        log "building the release binary"
        cargo build --release -p app --bin concert
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ------------------------------------------------------------------------------------ Redis

# A private redis-server for the Redis store: the bench loads a million tokens into it and
# throws it away, without touching the machine's own Redis.
start_redis() {
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --logfile "$WORK/redis.log" --dir "$WORK" &
    REDIS_PID=$!
    local i
    for i in $(seq 1 50); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
        sleep 0.1
        : "$i"
    done
    loud "the private redis-server did not start (see $WORK/redis.log)"
    exit 1
}

stop_redis() {
    if [[ -n $REDIS_PID ]]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=""
    fi
}

redis_memory_mb() { python3 "$ROOT/bench/redisq.py" memory "$REDIS_PORT" | awk '{printf "%.1f", $1 / 1048576}'; }

# ----------------------------------------------------------------------------------- server

# Samples the server's resident set every 100 ms: "epoch_seconds kB" lines.
sample_rss() {
    local pid=$1 key value _
    while [[ -r /proc/$pid/status ]]; do
        while read -r key value _; do
            if [[ $key == VmRSS: ]]; then
                printf '%s %s\n' "$EPOCHREALTIME" "$value" >>"$WORK/rss.txt"
                break
            fi
        done <"/proc/$pid/status" 2>/dev/null || true
        sleep 0.1
    done
}

start_sampler() {
    sample_rss "$SERVER_PID" &
    SAMPLER_PID=$!
}

stop_sampler() {
    if [[ -n $SAMPLER_PID ]]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
    fi
    SAMPLER_PID=""
}

server_rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0; }

# start_server NAME [VAR=value ...]: serves on a free loopback port with the given settings.
start_server() {
    local name=$1
    shift
    SERVER_NAME=$name
    SERVER_ENV=("$@")
    PORT=$(free_port)
    BASE_URL="http://127.0.0.1:$PORT"
    local redis_env=()
    if [[ $STORE == redis ]]; then
        redis_env=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT" REDIS_KEY_PREFIX="$REDIS_PREFIX")
    fi
    env DATABASE_URL="$DATABASE_URL_BENCH" BIND_ADDR="127.0.0.1:$PORT" QUEUE_STORE="$STORE" \
        DATABASE_POOL_SIZE="$POOL" RUST_LOG="$SERVER_LOG_LEVEL" LOG_FORMAT=json "${redis_env[@]}" "$@" \
        "$BIN" serve >>"$WORK/server-$STORE-$name.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 150); do
        if curl -fs -o /dev/null --max-time 1 "$BASE_URL/health/ready"; then
            start_sampler
            log "server $STORE/$name up on $BASE_URL (pid $SERVER_PID)"
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.2
        : "$i"
    done
    tail -n 30 "$WORK/server-$STORE-$name.log" >&2 || true
    loud "the server did not become ready"
    exit 1
}

stop_server() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        local hwm
        hwm=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
        printf '{"store":"%s","phase":"server-%s","kind":"hwm","kb":%s}\n' "$STORE" "$SERVER_NAME" "${hwm:-0}" >>"$RESULTS"
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
            : "$i"
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    stop_sampler
    SERVER_PID=""
}

# Two servers at once (the identity phase): the one measured is the current one (SERVER_PID,
# BASE_URL, ...), the other is parked; only the current one's RSS is sampled.
park_server() {
    stop_sampler
    PARKED_PID=$SERVER_PID
    PARKED_NAME=$SERVER_NAME
    PARKED_PORT=$PORT
    PARKED_ENV=("${SERVER_ENV[@]}")
    SERVER_PID=""
    SERVER_NAME=""
    PORT=""
    BASE_URL=""
    SERVER_ENV=()
}

unpark_server() {
    SERVER_PID=$PARKED_PID
    SERVER_NAME=$PARKED_NAME
    PORT=$PARKED_PORT
    BASE_URL="http://127.0.0.1:$PORT"
    SERVER_ENV=("${PARKED_ENV[@]}")
    PARKED_PID=""
    PARKED_NAME=""
    PARKED_PORT=""
    PARKED_ENV=()
    [[ -n $SERVER_PID ]] && start_sampler
    return 0
}

swap_servers() {
    local pid=$SERVER_PID name=$SERVER_NAME port=$PORT
    local -a env=("${SERVER_ENV[@]}")
    stop_sampler
    unpark_server
    PARKED_PID=$pid
    PARKED_NAME=$name
    PARKED_PORT=$port
    PARKED_ENV=("${env[@]}")
}

# A server that died under load is a finding, not a reason to lose the rest of the run: say so
# loudly, record it (the report fails the "stays up" target), and start it again.
ensure_server_alive() { # phase
    if [[ -n $SERVER_PID ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
        local status=0
        wait "$SERVER_PID" 2>/dev/null || status=$?
        SERVER_CRASHES=$((SERVER_CRASHES + 1))
        loud "THE SERVER DIED during or before $1 (exit status $status)" \
            "last log lines: $(tail -n 3 "$WORK/server-$STORE-$SERVER_NAME.log" | tr '\n' ' ' | cut -c1-300)"
        printf '{"store":"%s","phase":"%s","kind":"crash","detail":"exit status %s"}\n' "$STORE" "$1" "$status" >>"$RESULTS"
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
        SERVER_PID=""
        SAMPLER_PID=""
        start_server "$SERVER_NAME-restarted" "${SERVER_ENV[@]}"
    fi
}

cleanup() {
    stop_server
    if [[ -n $PARKED_PID ]]; then
        kill -TERM "$PARKED_PID" 2>/dev/null || true
        wait "$PARKED_PID" 2>/dev/null || true
    fi
    if [[ -n $ISSUER_PID ]]; then
        kill "$ISSUER_PID" 2>/dev/null || true
        wait "$ISSUER_PID" 2>/dev/null || true
    fi
    stop_redis
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -------------------------------------------------------------------------------- measuring

# "busy ours" CPU ticks, to tell how much other work shared the machine with a measurement.
cpu_snap() {
    python3 "$ROOT/bench/report.py" cpu "${SERVER_PID:-0}" "$$" "${REDIS_PID:-0}" "${PARKED_PID:-0}" "${ISSUER_PID:-0}"
}

record() { # phase kind conns t0 t1 result-json cpu-before cpu-after
    printf '{"store":"%s","phase":"%s","kind":"%s","conns":%s,"t0":%s,"t1":%s,"result":%s,"cpu":[%s,%s]}\n' \
        "$STORE" "$1" "$2" "$3" "$4" "$5" "$6" "${7// /,}" "${8// /,}" >>"$RESULTS"
}

# run_wrk PHASE KIND SCRIPT SECS [SCRIPT ARGS...]: CONNS connections; KIND endpoint|health|warmup.
run_wrk() {
    local phase=$1 kind=$2 script=$3 secs=$4
    shift 4
    local threads t0 t1 out result c0 c1
    threads=$(wrk_threads)
    [[ $phase == funnel ]] && threads=$CONNS
    # Every wrk run makes up its own new users (issue, funnel): a nonce of its own.
    WRK_RUNS=$((WRK_RUNS + 1))
    c0=$(cpu_snap)
    t0=$EPOCHREALTIME
    out=$(LUA_PATH="$ROOT/bench/wrk/?.lua;;" WRK_THREADS=$threads BENCH_DATA_DIR="$DATA" BENCH_RUN_NONCE=$((NONCE + WRK_RUNS)) \
        timeout $((secs + 30)) wrk -t "$threads" -c "$CONNS" -d "${secs}s" --timeout 10s \
        -s "$ROOT/bench/wrk/$script" "$BASE_URL" -- "$@" 2>&1) || true
    t1=$EPOCHREALTIME
    c1=$(cpu_snap)
    [[ $kind == warmup ]] && return 0
    result=$(sed -n 's/^BENCH_RESULT //p' <<<"$out")
    if [[ -z $result ]]; then
        printf '%s\n' "$out" >&2
        loud "wrk produced no result for $STORE $phase at $CONNS connections"
        result=null
    fi
    record "$phase" "$kind" "$CONNS" "$t0" "$t1" "$result" "$c0" "$c1"
    python3 - "$STORE" "$phase" "$CONNS" "$result" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[4]) or {}
print(f"           {sys.argv[1]:<8} {sys.argv[2]:<8} c={sys.argv[3]:<3} {r.get('rps', 0):>9,.0f} req/s  "
      f"p50 {r.get('p50_ms', 0):7.2f}  p99 {r.get('p99_ms', 0):7.2f}  max {r.get('max_ms', 0):7.1f} ms  "
      f"{r.get('statuses')}")
EOF
}

# run_pgbench PHASE SCRIPT [-D var=value ...]: POOL clients (the server's connections),
# -M prepared (the server prepares its statements too). SCRIPT is a path.
run_pgbench() {
    local phase=$1 script=$2
    shift 2
    local t0 t1 c0 c1 result out="$WORK/pgbench/$STORE-$phase.out" prefix="$WORK/pgbench/$STORE-$phase.log"
    c0=$(cpu_snap)
    t0=$EPOCHREALTIME
    timeout $((PGBENCH_SECS + 30)) pgbench -n -M prepared -c "$POOL" -j 2 -T "$PGBENCH_SECS" \
        -D clients="$POOL" -D k=-1 "$@" -f "$script" \
        -l --log-prefix="$prefix" "$DB" >"$out" 2>&1 || true
    t1=$EPOCHREALTIME
    c1=$(cpu_snap)
    result=$(python3 "$ROOT/bench/report.py" pgbench "$prefix" "$out")
    if grep -q 'error' "$out"; then
        grep -m 5 'error' "$out" >&2
        loud "pgbench reported errors for $phase (see $out)"
    fi
    record "$phase" pgbench "$POOL" "$t0" "$t1" "$result" "$c0" "$c1"
    python3 - "$STORE" "$phase" "$POOL" "$result" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[4])
print(f"           {sys.argv[1]:<8} {sys.argv[2]:<8} pgbench -c {sys.argv[3]:<3} {r.get('rps') or 0:>9,.0f} tx/s   "
      f"p50 {r.get('p50_ms') or 0:7.2f}  p99 {r.get('p99_ms') or 0:7.2f}  failed {r.get('failed')}")
EOF
}

# The pgbench script of an endpoint as this store's server runs it. Adjustments to the
# generated scripts (bench/pgbench/README.md): reserve spreads its transactions over the users
# that -D ubase/nusers name, so that no user passes the hold limit (past it the adapter's
# insert does nothing, which would make the ceiling a no-op); and with the queue in Redis the
# authorization (QueueStore::find) is a Redis call, so its PostgreSQL statement is left out.
pgbench_script() { # name
    local src="$ROOT/bench/pgbench/$1.sql" dst="$WORK/pgbench/$STORE-$1.sql"
    cp "$src" "$dst"
    if [[ $1 == reserve ]]; then
        grep -q '^\\set n 1 + :i % 2000$' "$dst" || { loud "bench/pgbench/reserve.sql changed shape: update pgbench_script in run.sh"; exit 1; }
        sed -i 's/^\\set n 1 + :i % 2000$/\\set n :ubase + :i % :nusers/' "$dst"
    fi
    if [[ $STORE == redis ]]; then
        sed -i '/^SELECT t\.seq AS seq, t\.token, t\.user_id, COALESCE(k\.status, t\.status) AS status, .* AS expired_reason FROM queue_tokens t JOIN queue_admission a /d' "$dst"
    fi
    echo "$dst"
}

check_invariants() { # phase [full]
    local phase=$1 full=${2:-} out ok=true detail
    out=$(psql_db -At -F ': ' -f "$ROOT/bench/sql/invariants.sql" 2>&1) || ok=false
    if [[ $STORE == redis ]]; then
        psql_db -At -c "SELECT token FROM payments WHERE token IS NOT NULL" >"$WORK/paid.txt"
        out+=$'\n'$(python3 "$ROOT/bench/redisq.py" check "$REDIS_PORT" "$REDIS_PREFIX" --paid "$WORK/paid.txt" \
            ${full:+--full} 2>&1) || ok=false
        if ((${#ROOM_LINES[@]} > 0)); then
            out+=$'\n'$(python3 "$ROOMS_PY" check-redis "$REDIS_PORT" "$REDIS_PREFIX" "${ROOM_LINES[@]}" 2>&1) || ok=false
        fi
    fi
    if grep -qv ': 0$' <<<"$out"; then ok=false; fi
    detail=$(tr '\n' ';' <<<"$out" | sed 's/"/'"'"'/g')
    if [[ $ok != true ]]; then
        INVARIANT_FAILURES=$((INVARIANT_FAILURES + 1))
        loud "INVARIANT VIOLATED after $STORE $phase:" "$out"
    else
        log "invariants hold after $STORE $phase"
    fi
    printf '{"store":"%s","phase":"%s","conns":%s,"kind":"invariants","ok":%s,"detail":"%s"}\n' \
        "$STORE" "$phase" "${CONNS:-0}" "$ok" "$detail" >>"$RESULTS"
}

within_budget() { # what
    if ((SECONDS > BUDGET_SECS)); then
        loud "time budget of ${BUDGET_SECS}s used up: skipping $1"
        return 1
    fi
}

# endpoint NAME SCRIPT DATA: the endpoint at CONNS connections (read-only ones after 1 s of
# unrecorded warm-up, so the measurement sees the steady state, not the first touch of pages).
endpoint() {
    local name=$1 script=$2 data=$3
    wanted "$name" || return 0
    within_budget "$STORE $name at $CONNS" || return 0
    ensure_server_alive "$name"
    case $name in
        poll_* | seats | health) run_wrk "$name" warmup "$script" 1 "$data" ;;
    esac
    local secs=$ENDPOINT_SECS
    [[ $name == health ]] && secs=$HEALTH_SECS
    run_wrk "$name" "$( [[ $name == health ]] && echo health || echo endpoint)" "$script" "$secs" "$data"
    ensure_server_alive "$name"
}

# Polls every token of a data file once (or more), so the poll cache holds them all before the
# measurement: in a real line everyone polls every few seconds. Each wrk thread leaves a mark
# when it has been through its share. Defaults: the long line's file.
warm_cache() { # [file tokens phase]
    local file=${1:-poll_1m.txt} tokens=${2:-$POLL_DISTINCT} phase=${3:-poll_1m}
    rm -f "$DATA"/wrapped.*
    local threads=$WRK_MAX_THREADS rss0 t0=$SECONDS pid i
    rss0=$(server_rss_mb)
    LUA_PATH="$ROOT/bench/wrk/?.lua;;" WRK_THREADS=$threads BENCH_DATA_DIR="$DATA" BENCH_RUN_NONCE=$NONCE \
        BENCH_WRAP_MARK="$DATA/wrapped." wrk -t "$threads" -c 32 -d 300s --timeout 10s \
        -s "$ROOT/bench/wrk/poll.lua" "$BASE_URL" -- "$file" >/dev/null 2>&1 &
    pid=$!
    for i in $(seq 1 1800); do
        (($(find "$DATA" -name 'wrapped.*' | wc -l) >= threads)) && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
        : "$i"
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local rss1
    rss1=$(server_rss_mb)
    log "poll cache warmed with $tokens tokens in $((SECONDS - t0)) s; server RSS $rss0 -> $rss1 MB"
    printf '{"store":"%s","phase":"%s","kind":"cache","tokens":%s,"rss_before_mb":%s,"rss_after_mb":%s,"secs":%s}\n' \
        "$STORE" "$phase" "$tokens" "$rss0" "$rss1" "$((SECONDS - t0))" >>"$RESULTS"
}

# ------------------------------------------------------------------------------------- data

export_data() { # file sql
    psql_db -At -F ' ' -c "$2" >"$DATA/$1"
}

prepare_database() {
    log "fresh database $DB"
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)"
    DATABASE_URL="$DATABASE_URL_BENCH" "$BIN" migrate >"$WORK/migrate.log" 2>&1 ||
        { cat "$WORK/migrate.log" >&2; exit 1; }
    log "catalogue: $CONCERTS concerts x $PER_CONCERT schedules x $SEATS seats; users, tokens, holds, balances"
    psql_db -v concerts="$CONCERTS" -v per_concert="$PER_CONCERT" -v seats="$SEATS" -f "$ROOT/bench/sql/prepare.sql"
}

# The data files address rows by the bench.* functions, the same on either store.
export_all() {
    local nconns k=0 c
    nconns=$(wc -w <<<"$CONNS_LIST")
    export_data poll_1k.txt "SELECT bench.tok(n) FROM generate_series(1000001, 1001000) n"
    export_data poll_1m.txt "SELECT bench.tok(1000001 + i * ($LINE / $POLL_DISTINCT)) FROM generate_series(0, $POLL_DISTINCT - 1) i"
    export_data browse.txt "SELECT bench.tok(1 + i % 2000), bench.sched(1 + (i * 7) % $SCHEDULES) FROM generate_series(0, 9999) i"
    export_data charge.txt "SELECT bench.uid(n) FROM generate_series(100001, 110000) n"
    export_data funnel_schedules.txt "SELECT bench.sched(s) FROM generate_series(901, 1000) s"
    # The moving phase: WAITING tokens of the line's last tenth (no tick of that phase reaches
    # them) and the ACTIVE tokens the seat phase browses with.
    export_data moving_waiting.txt "SELECT bench.tok(n) FROM generate_series($((1000000 + LINE - LINE / 10 + 1)), $((1000000 + LINE)), $((LINE / 10 / 1000 > 0 ? LINE / 10 / 1000 : 1))) n"
    export_data moving_active.txt "SELECT bench.tok(n) FROM generate_series(1, 2000) n"
    for c in $CONNS_LIST; do
        local r0=$((k * RESERVE_SEATS / nconns)) r1=$(((k + 1) * RESERVE_SEATS / nconns))
        local p0=$((10001 + k * PAY_USERS / nconns)) p1=$((10000 + (k + 1) * PAY_USERS / nconns))
        export_data "reserve_$c.txt" "SELECT bench.tok(200001 + i % $RESERVE_USERS), bench.sched(301 + i % 400),
                                             bench.seat(301 + i % 400, 1 + (i / 400) % $SEATS)
                                      FROM generate_series($r0, $r1 - 1) i"
        export_data "pay_$c.txt" "SELECT bench.tok(n), bench.res(n) FROM generate_series($p0, $p1) n"
        k=$((k + 1))
    done
}

# The Redis line holds for users USERS (comma-separated) the very values bench.tok exports:
# each value carries its token's seq, so the line must number them as bench.seq does (else
# every poll of the data files would answer 401). Stops the run otherwise.
check_token_values() { # users
    local want got
    want=$(psql_db -At -c "SELECT bench.tok(n) FROM unnest('{$1}'::bigint[]) n")
    got=$(python3 "$ROOT/bench/redisq.py" tokens "$REDIS_PORT" "$REDIS_PREFIX" "$1")
    if [[ $want != "$got" ]]; then
        loud "the Redis line's tokens are not bench.tok's (users $1): bench.seq (prepare.sql) and the line disagree" \
            "bench.tok: $(tr '\n' ' ' <<<"$want")" "Redis:     $(tr '\n' ' ' <<<"$got")"
        exit 1
    fi
}

# Appends WAITING tokens for users FROM..TO to the line of this round's store.
grow_line() { # from to
    if [[ $STORE == postgres ]]; then
        psql_db -v from="$1" -v to="$2" -f "$ROOT/bench/sql/waiting.sql" >/dev/null
    else
        python3 "$ROOT/bench/redisq.py" waiting "$REDIS_PORT" "$REDIS_PREFIX" "$1" "$2"
    fi
}

# After a bulk load: vacuum now (else autovacuum does it during a phase) and checkpoint now
# (else the checkpointer flushes the load's pages during a phase).
settle() {
    psql_db -c "VACUUM (ANALYZE)" -c "CHECKPOINT"
}

# The line moving (issue #22): `main`'s admission set by the operator API between turns.
#   still   paused: nobody admitted;
#   moving  admitBatch 100000 (the most the API takes) every second: each tick admits everyone
#           who joined since the last (the issue turns), or the line's next 100,000.
# First three ticks of 100,000 from the long line, each timed by the scheduler pass that ran
# it (`scheduler tick` at debug: its duration_ms is what scheduler_tick_duration_seconds
# records; target < 50 ms); then, at each connection count, turns still, moving, moving, still
# (report.py sums each side's turns) of: polls of WAITING tokens at the line's end (moving
# there admits 1,000 a second, so they stay WAITING while the cursor moves every second),
# token issue and polls of ACTIVE tokens (moving: everyone, every second). Targets: issue
# moving >= 0.9 x still; every poll turn p99 <= 10 x p50 (or <= 5 ms), max < 250 ms.
queue_admin() { # json body for PATCH /admin/queue
    curl -fsS -o /dev/null --max-time 10 -X PATCH -H "Authorization: Bearer $ADMIN_SECRET" \
        -H 'Content-Type: application/json' --data "$1" "$BASE_URL/admin/queue"
}

# Waits until every instance applied the admission settings (one scheduler check) and the
# first tick of them ran.
settings_settle() {
    sleep "$(python3 -c "print(max(1.2, $ROOMS_CHECK_MILLIS * 2 / 1000))")"
}

moving_phase() {
    wanted moving && within_budget "the $STORE moving line" || return 0
    local log_file="$WORK/server-$STORE-$SERVER_NAME.log" lines0 ticks
    log "phase moving: three ticks of 100,000"
    queue_admin '{"paused":true}' || { loud "PATCH /admin/queue failed"; return 0; }
    settings_settle
    lines0=$(wc -l <"$log_file")
    queue_admin '{"paused":false,"admitBatch":100000,"admitIntervalSecs":1}'
    sleep 3.5
    queue_admin '{"paused":true}'
    settings_settle
    ticks=$(tail -n +"$((lines0 + 1))" "$log_file" | python3 "$ROOT/bench/rooms.py" main-ticks 100000)
    printf '{"store":"%s","phase":"moving","kind":"tick100k","result":%s}\n' "$STORE" "$ticks" >>"$RESULTS"
    log "ticks of 100,000: $ticks"
    local mode order n=0 body what
    # Every WAITING turn first: the issue and ACTIVE turns' ticks of 100,000 soon admit the
    # whole line, the WAITING tokens at its end too.
    for what in waiting issue active; do
        for CONNS in $CONNS_LIST; do
            order="still moving moving still"
            ((n % 2 == 0)) || order="moving still still moving"
            n=$((n + 1))
            for mode in $order; do
                body='{"paused":true}'
                if [[ $mode == moving ]]; then
                    body='{"paused":false,"admitBatch":100000,"admitIntervalSecs":1}'
                    [[ $what == waiting ]] && body='{"paused":false,"admitBatch":1000,"admitIntervalSecs":1}'
                fi
                queue_admin "$body" || loud "PATCH /admin/queue failed"
                settings_settle
                case $what in
                    waiting) run_wrk "moving_waiting_$mode" warmup poll.lua 1 moving_waiting.txt
                        run_wrk "moving_waiting_$mode" endpoint poll.lua "$ENDPOINT_SECS" moving_waiting.txt ;;
                    issue) run_wrk "moving_issue_$mode" endpoint issue.lua "$ENDPOINT_SECS" ;;
                    active) run_wrk "moving_active_$mode" warmup poll.lua 1 moving_active.txt
                        run_wrk "moving_active_$mode" endpoint poll.lua "$ENDPOINT_SECS" moving_active.txt ;;
                esac
            done
            ensure_server_alive "moving $what"
        done
    done
    CONNS=""
    queue_admin '{"paused":false,"admitBatch":100,"admitIntervalSecs":60}' || true
    check_invariants moving
}

# The local issuer of the identity phase, for the whole run, and that phase's data: the users
# and their JWTs, minted once (each store's round starts from fresh data, so the same users
# serve both). The ids are bench.uid(n) of prepare.sql, written here without the database.
start_issuer() {
    python3 "$ROOT/tests/api/issuer.py" serve "$WORK/issuer" --alg "$IDENTITY_ALG" \
        >"$WORK/issuer.out" 2>"$WORK/issuer.log" &
    ISSUER_PID=$!
    local i
    for i in $(seq 1 100); do
        [[ -s $WORK/issuer.out ]] && break
        kill -0 "$ISSUER_PID" 2>/dev/null || break
        sleep 0.1
        : "$i"
    done
    ISSUER_URL=$(head -n 1 "$WORK/issuer.out" 2>/dev/null || true)
    if [[ -z $ISSUER_URL ]]; then
        cat "$WORK/issuer.log" >&2 || true
        loud "the local issuer did not start"
        exit 1
    fi
    local t0=$SECONDS c pid pids=()
    # shellcheck disable=SC2086 # one argument per connection count
    python3 - "$DATA" "$IDENTITY_BALANCE_USERS" "$IDENTITY_ON_BASE" "$IDENTITY_OFF_BASE" "$IDENTITY_ISSUES" \
        "$IDENTITY_OFF_ISSUES" $CONNS_LIST <<'PY'
import sys
data, balance = sys.argv[1], [int(x) for x in sys.argv[2].split()]
on_base, off_base, per, per_off = (int(x) for x in sys.argv[3:7])
def uid(n):
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
def write(name, first, count):
    with open(f"{data}/{name}", "w", encoding="ascii") as fh:
        fh.writelines(uid(n) + "\n" for n in range(first, first + count))
write("identity_balance_users.txt", balance[0], balance[1] - balance[0] + 1)
for k, conns in enumerate(sys.argv[7:]):
    write(f"identity_issue_on_users_{conns}.txt", on_base + k * per, per)
    write(f"identity_issue_off_{conns}.txt", off_base + k * per_off, per_off)
PY
    # Valid for the whole run, whatever the budget; minted in parallel, one file a process.
    for c in balance $CONNS_LIST; do
        local users="identity_issue_on_users_$c.txt" out="identity_issue_on_$c.txt"
        [[ $c == balance ]] && users=identity_balance_users.txt out=identity_balance.txt
        python3 "$ROOT/tests/api/issuer.py" mint --audience "$IDENTITY_AUDIENCE" --ttl $((BUDGET_SECS + 7200)) \
            --in "$DATA/$users" --out "$DATA/$out" "$WORK/issuer" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || { loud "minting the JWTs of the identity phase failed"; exit 1; }
    done
    log "local issuer ($IDENTITY_ALG) on $ISSUER_URL; $(cat "$DATA"/identity_balance.txt "$DATA"/identity_issue_on_[0-9]*.txt | wc -l) JWTs minted in $((SECONDS - t0)) s"
}

machine() {
    local model mem
    model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
    mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
    MACHINE="$(nproc) × ${model:-unknown CPU}, $mem RAM, $(psql -X -At -d postgres -c 'SHOW server_version' | awk '{print "PostgreSQL " $1}'), $(redis-server --version | awk '{print "Redis " substr($3, 3)}')"
    MACHINE_DETAIL="$MACHINE; $(uname -sr); $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}'); shared_buffers $(psql -X -At -d postgres -c 'SHOW shared_buffers'), synchronous_commit $(psql -X -At -d postgres -c 'SHOW synchronous_commit')"
}

write_meta() {
    python3 - "$WORK/meta.json" <<EOF
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "machine": "$MACHINE",
    "machine_detail": "$MACHINE_DETAIL",
    "stores": "$STORES".split(),
    "connections": [int(c) for c in "$CONNS_LIST".split()],
    "pool": $POOL,
    "nproc": $(nproc),
    "clk_tck": $(getconf CLK_TCK),
    "wrk_threads": $WRK_MAX_THREADS,
    "endpoint_secs": $ENDPOINT_SECS,
    "health_secs": $HEALTH_SECS,
    "pgbench_secs": $PGBENCH_SECS,
    "line": $LINE,
    "poll_distinct": $POLL_DISTINCT,
    "identity_alg": "$IDENTITY_ALG",
    "identity_issues": $IDENTITY_ISSUES,
    "identity_off_issues": $IDENTITY_OFF_ISSUES,
    "rooms": $ROOMS,
    "room_line": $ROOM_LINE,
    "rooms_poll_distinct": $ROOMS_POLL_DISTINCT,
    "rooms_watch_secs": $ROOMS_WATCH_SECS,
    "abandon_line": $ABANDON_LINE,
    "draw_entrants": $DRAW_ENTRANTS,
    "draw_sample": $DRAW_SAMPLE,
    "scheduler_check_millis": $ROOMS_CHECK_MILLIS,
    "total_secs": $SECONDS,
    "invariant_failures": $INVARIANT_FAILURES,
    "server_crashes": $SERVER_CRASHES,
}, open(sys.argv[1], "w"), indent=1)
EOF
}

# ----------------------------------------------------------------------------- identity

# Which server is current in the identity phase: "on" or "off".
IDENTITY_CURRENT=""
identity_use() { # on|off
    if [[ $IDENTITY_CURRENT != "$1" ]]; then
        swap_servers
        IDENTITY_CURRENT=$1
    fi
}

# The cost of one signature verification of the identity phase's algorithm on this machine, in
# the same run: `openssl speed` (one core; the server's aws-lc runs the same kind of code) while
# both servers idle. Token issue verifies a JWT it has never seen, so this cost is paid on every
# request: with X µs of machine CPU per issue with identity off and V µs per verification, the
# best "on ÷ off" any server can reach is X / (X + V); the report prints it beside the target.
identity_verify_ceiling() {
    local alg=ecdsap256
    [[ $IDENTITY_ALG == EdDSA ]] && alg=ed25519
    local per_s
    per_s=$(openssl speed -seconds 2 "$alg" 2>/dev/null | awk '/verify\/s/ {getline; print $NF}' | tail -1)
    if [[ $per_s =~ ^[0-9.]+$ ]]; then
        record identity_verify ceiling 0 "$EPOCHREALTIME" "$EPOCHREALTIME" \
            "{\"algorithm\":\"$IDENTITY_ALG\",\"verify_per_s\":$per_s}" 0 0
        log "one $IDENTITY_ALG verification on this machine: $(python3 -c "print(f'{1e6 / $per_s:.1f}')") µs (openssl speed $alg)"
    else
        log "openssl speed $alg gave no figure; the identity targets print no ceiling"
    fi
}

# Token issue and balance reads with identity on (a second server, the main one's settings plus
# AUTH_ISSUER: the local issuer) and off (the main server: the same requests without a JWT), at
# each connection count. The two take turns, the first of each pair alternating between the
# connection counts, so that a burst of other work on the machine hits both alike.
identity_phase() {
    wanted identity || return 0
    within_budget "the $STORE identity phase" || return 0
    CONNS=""
    log "phase identity: a server with identity on ($IDENTITY_ALG JWTs of the local issuer) beside the main one"
    park_server
    start_server identity QUEUE_ADMIT_INTERVAL_SECS=60 QUEUE_ADMIT_BATCH=100 \
        AUTH_ISSUER="$ISSUER_URL" AUTH_AUDIENCE="$IDENTITY_AUDIENCE"
    IDENTITY_CURRENT=on
    # The keys are fetched at start: the first signed request must be answered 200.
    local user jwt i ok=false
    read -r user jwt <"$DATA/identity_balance.txt"
    for i in $(seq 1 50); do
        if curl -fs -o /dev/null --max-time 5 -H "Authorization: Bearer $jwt" "$BASE_URL/users/$user/balance"; then
            ok=true
            break
        fi
        sleep 0.2
        : "$i"
    done
    if [[ $ok == true ]]; then
        identity_verify_ceiling
        local k=0 order what mode
        for CONNS in $CONNS_LIST; do
            order="off on"
            ((k % 2 == 0)) || order="on off"
            k=$((k + 1))
            for what in issue balance; do
                for mode in $order; do
                    within_budget "$STORE identity $what $mode at $CONNS" || continue
                    identity_use "$mode"
                    ensure_server_alive "identity_${what}_$mode"
                    if [[ $what == balance ]]; then
                        run_wrk "identity_balance_$mode" warmup identity.lua 1 identity_balance.txt balance "$mode"
                        run_wrk "identity_balance_$mode" endpoint identity.lua "$ENDPOINT_SECS" identity_balance.txt balance "$mode"
                    else
                        run_wrk "identity_issue_$mode" endpoint identity.lua "$ENDPOINT_SECS" \
                            "identity_issue_${mode}_$CONNS.txt" issue "$mode"
                    fi
                    ensure_server_alive "identity_${what}_$mode"
                done
            done
        done
        CONNS=""
        check_invariants identity
    else
        loud "the server with identity on does not accept the local issuer's JWTs: identity phase skipped" \
            "(see $WORK/server-$STORE-identity.log)"
    fi
    identity_use on
    stop_server
    unpark_server
    IDENTITY_CURRENT=""
}

# ------------------------------------------------------------------------------------ rooms

# The rooms phases, on a server of their own with the operator API on (ADMIN_TOKEN) and the
# scheduler's passes logged (scheduler=debug, for the admission tick's duration):
#   draw     a room whose pre-queue holds DRAW_ENTRANTS tokens opens DRAW_LEAD_SECS after its
#            creation; how long from the opening until the operator view shows the draw
#            (target: 5 s on Redis, 30 s on PostgreSQL), a sample of positions checked against
#            `concert draw-order`, and polls of a sample of entrants from 2 s before the
#            opening until 1 s after the draw is seen (target: p99 < 250 ms); then the same
#            line, one token in 10 seen just now (the rest silent since their issue, 10 min
#            ago), gets abandonAfterSecs 30 and N = 100 per second: each admission tick skips
#            about 9 absent per present one (target: under 100 ms; the duration of the
#            scheduler pass that ran it, every other room's check included, from the log)
#   rooms    ROOMS rooms of ROOM_LINE waiting each, admitting ROOMS_ADMIT_BATCH every
#            ROOMS_INTERVAL_SECS; the operator view sampled every 0.5 s for ROOMS_WATCH_SECS
#            gives each admission's lateness (its time minus the room's previous admission plus
#            the interval; target: at most SCHEDULER_CHECK_MILLIS); meanwhile polls over
#            ROOMS_POLL_DISTINCT tokens spread over every room, beside /health/live of this
#            server, at each connection count (target: >= 0.8 x /health/live)
#   abandon  (inside the same window) polls of a room with abandonAfterSecs 30 and of one
#            without, ABANDON_LINE waiting each, taking turns off-on-on-off (target: on >= 0.9 x off)
# The lines are written straight into the store (bench/sql/rooms.sql, bench/rooms.py load);
# the rooms are created through POST /admin/rooms.
ROOMS=${BENCH_ROOMS:-100}
ROOM_LINE=${BENCH_ROOM_LINE:-10000}
ROOMS_POLL_DISTINCT=${BENCH_ROOMS_POLL_DISTINCT:-200000}
ROOMS_WATCH_SECS=${BENCH_ROOMS_WATCH_SECS:-120}
ROOMS_ADMIT_BATCH=${BENCH_ROOMS_ADMIT_BATCH:-5}
ROOMS_INTERVAL_SECS=${BENCH_ROOMS_INTERVAL_SECS:-10}
ABANDON_LINE=${BENCH_ABANDON_LINE:-10000}
DRAW_ENTRANTS=${BENCH_DRAW_ENTRANTS:-1000000}
DRAW_SAMPLE=${BENCH_DRAW_SAMPLE:-2000}
DRAW_CONNS=${BENCH_DRAW_CONNS:-16}
DRAW_LEAD_SECS=${BENCH_DRAW_LEAD_SECS:-6}
ROOMS_CHECK_MILLIS=${SCHEDULER_CHECK_MILLIS:-1000}
ADMIN_SECRET="bench-admin-$NONCE-$RANDOM$RANDOM"
ROOMS_PY="$ROOT/bench/rooms.py"
# The rooms' lines of this round, checked with the main line's invariants on Redis.
ROOM_LINES=()

# CPU seconds a process has used so far (0 when it is gone).
proc_cpu() {
    awk -v tck="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / tck}' "/proc/$1/stat" 2>/dev/null || echo 0
}

iso_at() { date -u -d "@$1" '+%Y-%m-%dT%H:%M:%S.%3NZ'; } # epoch seconds (with a fraction)
now_us() { echo $((${EPOCHREALTIME/./})); }

load_room_lines() { # ROOM:COUNT:AGO_SECS ...
    if [[ $STORE == postgres ]]; then
        local values="" spec room count ago
        for spec in "$@"; do
            IFS=: read -r room count ago <<<"$spec"
            values+="${values:+, }('$room', $count, $ago)"
        done
        psql_db -v lines="$values" -f "$ROOT/bench/sql/rooms.sql" >/dev/null
    else
        # Two loaders at once (each mostly waits for Redis' replies): the longest line alone,
        # the others together.
        local longest="" spec rest=() pids=() pid
        for spec in "$@"; do
            if [[ -z $longest ]] || (($(cut -d: -f2 <<<"$spec") > $(cut -d: -f2 <<<"$longest"))); then
                [[ -n $longest ]] && rest+=("$longest")
                longest=$spec
            else
                rest+=("$spec")
            fi
        done
        python3 "$ROOMS_PY" load "$REDIS_PORT" "$REDIS_PREFIX" "$longest" &
        pids+=($!)
        if ((${#rest[@]} > 0)); then
            python3 "$ROOMS_PY" load "$REDIS_PORT" "$REDIS_PREFIX" "${rest[@]}" &
            pids+=($!)
        fi
        for pid in "${pids[@]}"; do
            wait "$pid" || { loud "loading the rooms' lines into Redis failed"; exit 1; }
        done
    fi
}

mark_seen() { # room count every: tokens n % every == 0 seen now
    if [[ $STORE == postgres ]]; then
        psql_db -c "INSERT INTO queue_sights (room, token, seen_at) SELECT room, token, now() FROM queue_tokens WHERE room = '$1' AND seq % $3 = 0 AND status = 'WAITING' ON CONFLICT (room, token) DO UPDATE SET seen_at = EXCLUDED.seen_at" >/dev/null
    else
        python3 "$ROOMS_PY" seen-redis "$REDIS_PORT" "$REDIS_PREFIX" "$1" "$2" "$3"
    fi
}

draw_phase() {
    wanted draw && within_budget "the $STORE draw" || return 0
    local limit=30 opens_us opens t0 t1 c0 c1 out="$WORK/draw-wrk-$STORE.out" wpid result wait_for
    [[ $STORE == redis ]] && limit=5
    # How long to wait for the draw: well past the target, so that a miss is measured too.
    wait_for=$((limit * 3 > limit + 30 ? limit * 3 : limit + 30))
    opens_us=$(($(now_us) + DRAW_LEAD_SECS * 1000000))
    opens=$(iso_at "$((opens_us / 1000000)).$(printf '%06d' $((opens_us % 1000000)))")
    log "phase draw: $DRAW_ENTRANTS entrants, the room opens at $opens (target: positions within $limit s)"
    python3 "$ROOMS_PY" create "$BASE_URL" "$ADMIN_SECRET" \
        "{\"id\":\"draw\",\"name\":\"Bench draw\",\"concertIds\":[],\"prequeueOpensAt\":\"$(iso_at $(($(now_us) / 1000000 - 3600)))\",\"opensAt\":\"$opens\",\"admitBatch\":1,\"admitIntervalSecs\":3600}" ||
        { loud "the draw room could not be created"; return 0; }
    local wait_us=$((opens_us - 2000000 - $(now_us)))
    ((wait_us > 0)) && sleep "$((wait_us / 1000000)).$(printf '%06d' $((wait_us % 1000000)))"
    CONNS=$DRAW_CONNS
    # Who used the CPU between the opening and the draw shown: this server, Redis, the rest.
    local cpu0 rcpu0 busy0
    cpu0=$(proc_cpu "$SERVER_PID")
    rcpu0=$(proc_cpu "${REDIS_PID:-0}")
    busy0=$(awk '/^cpu / {print $2 + $3 + $4 + $9; exit}' /proc/stat)
    c0=$(cpu_snap)
    t0=$EPOCHREALTIME
    LUA_PATH="$ROOT/bench/wrk/?.lua;;" WRK_THREADS=$(wrk_threads) BENCH_DATA_DIR="$DATA" \
        wrk -t "$(wrk_threads)" -c "$CONNS" -d "$((wait_for + 5))s" --timeout 10s \
        -s "$ROOT/bench/wrk/poll.lua" "$BASE_URL" -- draw_poll.txt >"$out" 2>&1 &
    wpid=$!
    python3 "$ROOMS_PY" await-draw "$BASE_URL" "$ADMIN_SECRET" draw "$opens_us" "$wait_for" "$WORK/draw-$STORE.json" ||
        loud "no draw recorded $wait_for s after the opening"
    local cpu1 rcpu1 busy1 drew_wall
    cpu1=$(proc_cpu "$SERVER_PID")
    rcpu1=$(proc_cpu "${REDIS_PID:-0}")
    busy1=$(awk '/^cpu / {print $2 + $3 + $4 + $9; exit}' /proc/stat)
    drew_wall=$(python3 -c 'import sys; print(round((int(sys.argv[1]) - int(sys.argv[2])) / 1e6 + 2, 2))' "$(now_us)" "$opens_us")
    sleep 1
    kill -INT "$wpid" 2>/dev/null || true
    wait "$wpid" 2>/dev/null || true
    t1=$EPOCHREALTIME
    c1=$(cpu_snap)
    result=$(sed -n 's/^BENCH_RESULT //p' "$out")
    [[ -n $result ]] || { cat "$out" >&2; loud "wrk produced no result for the polls during the draw"; result=null; }
    record draw_poll endpoint "$CONNS" "$t0" "$t1" "$result" "$c0" "$c1"
    ensure_server_alive draw
    # The record: opening, when the view showed the draw, the draw's own time, and the check.
    local check='{}' probe='{}' seed entrants admitted
    read -r seed entrants admitted < <(python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))["view"] or {}; d=v.get("draw") or {}
print(d.get("seed", 0), d.get("entrants", 0), v.get("admittedThrough", 0))' "$WORK/draw-$STORE.json")
    if ((entrants > 0)); then
        # The opening's admission runs in the same pass, just after the draw is recorded.
        admitted=$(python3 "$ROOMS_PY" view "$BASE_URL" "$ADMIN_SECRET" draw |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["admittedThrough"])')
        # First polls of entrants not polled before, right after the draw (on PostgreSQL the
        # draw analyses queue_draw_positions in its own transaction, so these polls show
        # whether the reads' plans know the draw's million rows).
        probe=$(python3 "$ROOMS_PY" check-draw "$BASE_URL" draw "$entrants" "$((seed + 1))" "$admitted" "$BIN" 100 --order "$seed") ||
            probe='{}'
        log "phase draw: 100 first polls after the draw: $probe"
        log "phase draw: checking $DRAW_SAMPLE positions against concert draw-order"
        check=$(python3 "$ROOMS_PY" check-draw "$BASE_URL" draw "$entrants" "$seed" "$admitted" "$BIN" "$DRAW_SAMPLE") ||
            { loud "the draw's spot check failed to run"; check='{}'; }
    fi
    python3 - "$WORK/draw-$STORE.json" "$STORE" "$opens_us" "$limit" "$DRAW_ENTRANTS" "$check" "$probe" "$admitted" \
        "{\"wall_s\":$drew_wall,\"server_s\":$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {print b - a}'),\"redis_s\":$(awk -v a="$rcpu0" -v b="$rcpu1" 'BEGIN {print b - a}'),\"machine_s\":$(awk -v a="$busy0" -v b="$busy1" -v t="$(getconf CLK_TCK)" 'BEGIN {print (b - a) / t}')}" >>"$RESULTS" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0])
rec = json.load(open(sys.argv[1]))
view = rec.get("view") or {}
d = view.get("draw") or {}
def us(s):
    from datetime import datetime
    if not s: return None
    s = s.replace("Z", "+00:00")
    head, _, frac = s.partition(".")
    if frac:
        digits = "".join(c for c in frac if c.isdigit())
        zone = frac[len(digits):]
        s = head + "." + (digits + "000000")[:6] + zone
    return int(datetime.fromisoformat(s).timestamp() * 1_000_000)
opens = int(sys.argv[3])
print(json.dumps({"store": sys.argv[2], "phase": "draw", "kind": "draw", "loaded": int(sys.argv[5]),
                  "entrants": d.get("entrants"), "seed": d.get("seed"), "limit_s": int(sys.argv[4]),
                  "recorded": bool(d), "seen_s": (rec["seen_us"] - opens) / 1e6 if d else None,
                  "at_s": (us(d.get("at")) - opens) / 1e6 if d.get("at") else None,
                  "admitted": int(sys.argv[8]), "check": json.loads(sys.argv[6]),
                  "first_polls": json.loads(sys.argv[7]), "cpu": json.loads(sys.argv[9])}))
PY
    python3 - "$RESULTS" <<'PY' >&2
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if '"kind":"draw"' in l.replace(" ", "")][-1]
c = r.get("check") or {}
print(f"           {r['store']:<8} draw     {r.get('entrants') or 0:,} entrants: shown {r.get('seen_s')} s after the opening "
      f"(draw.at {r.get('at_s')} s); {c.get('exact', 0)}/{c.get('checked', 0)} sampled positions exact")
PY
    # The abandonment tick: one in 10 seen now, the rest silent since their issue.
    if ((entrants > 0)); then
        log "phase draw: marking one entrant in 10 seen"
        mark_seen draw "$DRAW_ENTRANTS" 10
        python3 "$ROOMS_PY" patch "$BASE_URL" "$ADMIN_SECRET" draw '{"abandonAfterSecs":30,"admitBatch":100,"admitIntervalSecs":1}' ||
            loud "the draw room could not be changed for the abandonment tick"
        log "phase draw: abandonment ticks (N = 100, 1 in 10 present) for 6 s"
        sleep 6
        python3 "$ROOMS_PY" patch "$BASE_URL" "$ADMIN_SECRET" draw '{"paused":true}' || true
        sleep 1
        local ticks
        ticks=$(python3 "$ROOMS_PY" ticks "$WORK/server-$STORE-$SERVER_NAME.log" draw)
        printf '{"store":"%s","phase":"tick","kind":"tick","line":%s,"result":%s}\n' "$STORE" "$entrants" "$ticks" >>"$RESULTS"
        log "abandonment ticks: $ticks"
    fi
    CONNS=""
    # The draw and the ticks wrote a million rows: vacuum and checkpoint now, not in the window.
    [[ $STORE == postgres ]] && settle >/dev/null
    return 0
}

rooms_window() {
    (wanted rooms || wanted abandon) && within_budget "the $STORE rooms" || return 0
    local bodies=() k id watch_pid=""
    if wanted abandon; then
        # Present at the creation (its first admission runs at once), then kept present by polls.
        mark_seen ab-on "$ABANDON_LINE" 1
        bodies+=('{"id":"ab-on","name":"Bench abandonment on","concertIds":[],"abandonAfterSecs":30,"admitBatch":1,"admitIntervalSecs":3600}'
            '{"id":"ab-off","name":"Bench abandonment off","concertIds":[],"admitBatch":1,"admitIntervalSecs":3600}')
    fi
    if wanted rooms; then
        for k in $(seq 1 "$ROOMS"); do
            id=$(printf 'r%03d' "$k")
            bodies+=("{\"id\":\"$id\",\"name\":\"Bench room $k\",\"concertIds\":[],\"admitBatch\":$ROOMS_ADMIT_BATCH,\"admitIntervalSecs\":$ROOMS_INTERVAL_SECS}")
        done
    fi
    python3 "$ROOMS_PY" create "$BASE_URL" "$ADMIN_SECRET" "${bodies[@]}" || { loud "rooms could not be created"; return 0; }
    if wanted rooms; then
        log "phase rooms: $ROOMS rooms x $ROOM_LINE waiting; the operator view sampled for $ROOMS_WATCH_SECS s"
        python3 "$ROOMS_PY" watch "$BASE_URL" "$ADMIN_SECRET" "$ROOMS_WATCH_SECS" 0.5 "$WORK/watch-$STORE.jsonl" &
        watch_pid=$!
        warm_cache rooms_poll.txt "$ROOMS_POLL_DISTINCT" rooms_poll
        for CONNS in $CONNS_LIST; do
            run_wrk rooms_health warmup health.lua 1 -
            run_wrk rooms_health health health.lua "$HEALTH_SECS" -
            run_wrk rooms_poll warmup poll.lua 1 rooms_poll.txt
            run_wrk rooms_poll endpoint poll.lua "$ENDPOINT_SECS" rooms_poll.txt
            ensure_server_alive rooms_poll
        done
    fi
    if wanted abandon; then
        # Turns off, on, on, off (then on, off, off, on): the rooms window's admissions and the
        # presence buckets (4 s) come and go during the phase, and a drift of the load over
        # four turns weighs on both sides alike; report.py sums each side's turns.
        log "phase abandon: polls of a room with abandonAfterSecs 30 and of one without, taking turns"
        local n=0 order mode
        for CONNS in $CONNS_LIST; do
            order="off on on off"
            ((n % 2 == 0)) || order="on off off on"
            n=$((n + 1))
            for mode in $order; do
                run_wrk "abandon_$mode" warmup poll.lua 1 "abandon_$mode.txt"
                run_wrk "abandon_$mode" endpoint poll.lua "$ENDPOINT_SECS" "abandon_$mode.txt"
            done
            ensure_server_alive abandon
        done
    fi
    CONNS=""
    if [[ -n $watch_pid ]]; then
        log "waiting for the end of the $ROOMS_WATCH_SECS s window"
        wait "$watch_pid" || true
        local late
        late=$(python3 "$ROOMS_PY" lateness "$WORK/watch-$STORE.jsonl" "$ROOMS_CHECK_MILLIS" r)
        printf '{"store":"%s","phase":"rooms","kind":"lateness","window_s":%s,"interval_s":%s,"batch":%s,"line":%s,"result":%s}\n' \
            "$STORE" "$ROOMS_WATCH_SECS" "$ROOMS_INTERVAL_SECS" "$ROOMS_ADMIT_BATCH" "$ROOM_LINE" "$late" >>"$RESULTS"
        log "admissions' lateness: $late"
    fi
}

rooms_phases() {
    wanted rooms || wanted abandon || wanted draw || return 0
    within_budget "the $STORE rooms phases" || return 0
    CONNS=""
    local lines=() k t0=$SECONDS per step head
    if wanted rooms; then
        for k in $(seq 1 "$ROOMS"); do lines+=("$(printf 'r%03d' "$k"):$ROOM_LINE:60"); done
    fi
    wanted abandon && lines+=("ab-on:$ABANDON_LINE:0" "ab-off:$ABANDON_LINE:0")
    wanted draw && lines+=("draw:$DRAW_ENTRANTS:600")
    [[ $STORE == redis ]] && REDIS_PREFIX="bench"
    local spec
    ROOM_LINES=()
    for spec in "${lines[@]}"; do ROOM_LINES+=("${spec%%:*}"); done
    log "loading the rooms' lines (${#lines[@]} lines)"
    load_room_lines "${lines[@]}"
    settle >/dev/null
    log "rooms' lines loaded in $((SECONDS - t0)) s"
    # Polled tokens: past the head that admissions take during the window, spread over each
    # line, the rooms interleaved; the draw's sample is one entrant in 50 (all among the one
    # in 10 the abandonment tick keeps present).
    per=$((ROOMS_POLL_DISTINCT / ROOMS))
    head=$((ROOM_LINE / 20 + 1))
    step=$(((ROOM_LINE - head) / (per > 0 ? per : 1)))
    ((step > 0)) || step=1
    local specs=() spec=""
    for k in $(seq 1 "$ROOMS"); do
        spec+="${spec:+,}$(printf 'r%03d' "$k"):$head:$((head + (per - 1) * step)):$step"
    done
    wanted rooms && specs+=("rooms_poll.txt=$spec")
    wanted abandon && specs+=("abandon_on.txt=ab-on:2:$ABANDON_LINE:1" "abandon_off.txt=ab-off:2:$ABANDON_LINE:1")
    wanted draw && specs+=("draw_poll.txt=draw:50:$DRAW_ENTRANTS:50")
    python3 "$ROOMS_PY" data "$DATA" "${specs[@]}"
    start_server rooms ADMIN_TOKEN="$ADMIN_SECRET" QUEUE_ADMIT_INTERVAL_SECS=60 QUEUE_ADMIT_BATCH=100 \
        RUST_LOG="$SERVER_LOG_LEVEL,scheduler=debug"
    draw_phase
    rooms_window
    ensure_server_alive "the end of the $STORE rooms phases"
    check_invariants rooms
    ROOM_LINES=()
    stop_server
}

# ------------------------------------------------------------------------------------ a round

# Everything for one queue store: fresh data, the main server (admission once a minute, so the
# line stays put while polls measure it), the endpoints at each connection count, the
# pgbench ceilings, the identity phase (a second server beside it), then the funnel on its own
# server.
round() {
    STORE=$1
    CONNS=""
    within_budget "the $STORE round" || return 0
    log "===== queue store: $STORE"
    prepare_database
    if [[ $STORE == redis ]]; then
        start_redis
        REDIS_PREFIX="bench"
        python3 "$ROOT/bench/redisq.py" active "$REDIS_PORT" "$REDIS_PREFIX" "$ACTIVE_USERS"
        # The tokens live in Redis only, as on a real server with the queue there: left in
        # queue_tokens too, they would be the ones a payment finds and uses up in PostgreSQL
        # (Settlement::uses_up_token), and Redis would keep every paid token ACTIVE.
        psql_db -c "TRUNCATE queue_tokens, queue_admission_ranges" \
            -c "UPDATE queue_admission SET admitted_through = 0, last_admission_at = NULL"
    fi
    grow_line 1000001 1001000
    export_all
    [[ $STORE == redis ]] && check_token_values "1,2000,10001,70000,200001,220000,300001,310000,1000001,1001000"
    settle
    start_server main QUEUE_ADMIT_INTERVAL_SECS=60 QUEUE_ADMIT_BATCH=100 ADMIN_TOKEN="$ADMIN_SECRET" \
        RUST_LOG="$SERVER_LOG_LEVEL,scheduler=debug"

    for CONNS in $CONNS_LIST; do
        endpoint health health.lua -
        endpoint poll_1k poll.lua poll_1k.txt
    done

    if wanted poll_1m && within_budget "the $LINE-token line"; then
        CONNS=""
        log "growing the line to $LINE waiting tokens"
        local redis_mb0=0
        [[ $STORE == redis ]] && redis_mb0=$(redis_memory_mb)
        grow_line 1001001 $((1000000 + LINE))
        settle
        if [[ $STORE == redis ]]; then
            check_token_values "$((1000000 + LINE))"
            local redis_mb
            redis_mb=$(redis_memory_mb)
            log "Redis used_memory $redis_mb MB with $LINE waiting"
            printf '{"store":"redis","phase":"poll_1m","kind":"redis_memory","mb":%s,"mb_before":%s,"line":%s,"added":%s}\n' \
                "$redis_mb" "$redis_mb0" "$LINE" $((LINE - 1000)) >>"$RESULTS"
        fi
        warm_cache
        for CONNS in $CONNS_LIST; do
            endpoint poll_1m poll.lua poll_1m.txt
        done
    fi

    # The database's ceilings, with the server idle (its pool is open, it sends nothing).
    CONNS=""
    if within_budget "the pgbench ceilings"; then
        log "pgbench ceilings, $POOL clients"
        if [[ $STORE == postgres ]] && wanted issue; then
            run_pgbench issue_insert "$ROOT/bench/pgbench/issue_insert.sql" -D base=3000001 -D offset=0 \
                -D seqbase=$ISSUE_INSERT_SEQBASE
            psql_db -c "DELETE FROM queue_tokens WHERE seq >= $ISSUE_INSERT_SEQBASE"
        fi
        wanted seats && run_pgbench seats "$(pgbench_script seats)" -D schedules="$SCHEDULES"
        wanted reserve && run_pgbench reserve "$(pgbench_script reserve)" -D offset=0 -D sbase=701 -D nsched=200 \
            -D numbase=1 -D nseats="$SEATS" -D ubase=300001 -D nusers=10000
        if [[ $STORE == postgres ]] && wanted pay; then
            run_pgbench pay "$(pgbench_script pay)" -D base=40001 -D offset=0
        fi
        wanted charge && run_pgbench charge "$(pgbench_script charge)"
        settle >/dev/null
    fi

    for CONNS in $CONNS_LIST; do
        endpoint issue issue.lua -
        wanted issue && check_invariants issue
        endpoint seats seats.lua browse.txt
        endpoint reserve reserve.lua "reserve_$CONNS.txt"
        wanted reserve && check_invariants reserve
        endpoint pay pay.lua "pay_$CONNS.txt"
        wanted pay && check_invariants pay
        endpoint charge charge.lua charge.txt
        wanted charge && check_invariants charge
    done
    CONNS=""
    moving_phase
    identity_phase
    [[ $STORE == redis ]] && check_invariants "the $STORE phases (whole line)" full
    ensure_server_alive "the end of the $STORE phases"
    stop_server

    # The funnel gets an admission tick every second, big enough for everyone, on an empty
    # line: the poll phases' line is cleared (PostgreSQL: the WAITING tail above the cursor is
    # removed and the cursor set to the last token left, so positions stay exact; the tokens an
    # admission's range admitted stay stored WAITING below the cursor and are kept; Redis: a new
    # key prefix).
    if wanted funnel && within_budget "the $STORE funnel"; then
        log "clearing the waiting line for the funnel"
        if [[ $STORE == postgres ]]; then
            psql_db <<'EOF'
BEGIN;
SELECT pg_advisory_xact_lock(1000001, 0);
CREATE TEMP TABLE keep ON COMMIT DROP AS SELECT t.* FROM queue_tokens t JOIN queue_admission a ON a.room = t.room
  WHERE t.status <> 'WAITING' OR t.seq <= a.admitted_through;
TRUNCATE queue_tokens;
INSERT INTO queue_tokens SELECT * FROM keep;
UPDATE queue_admission SET admitted_through = (SELECT COALESCE(max(seq), 0) FROM queue_tokens), last_admission_at = NULL;
COMMIT;
EOF
        else
            REDIS_PREFIX="bench-funnel"
        fi
        CONNS=$(awk '{print $1}' <<<"$CONNS_LIST")
        start_server funnel QUEUE_ADMIT_INTERVAL_SECS=1 QUEUE_ADMIT_BATCH=100000 SCHEDULER_CHECK_MILLIS=100 \
            ADMIN_TOKEN="$ADMIN_SECRET"
        # The variables only give the settings until an operator changes them, and the moving
        # phase did (it leaves main at 100 a minute): set the funnel's through the API too.
        queue_admin '{"paused":false,"admitBatch":100000,"admitIntervalSecs":1}' || loud "PATCH /admin/queue failed"
        sleep 0.5
        log "phase funnel"
        run_wrk funnel endpoint funnel.lua "$ENDPOINT_SECS" funnel_schedules.txt
        ensure_server_alive funnel
        check_invariants funnel full
        stop_server
    fi
    rooms_phases
    stop_redis
}

# -------------------------------------------------------------------------------------- run

ensure_tools
# The budget and the reported run time cover the bench itself, not compiling.
SECONDS=0
machine
log "work files in $WORK; stores: $STORES; connections: $CONNS_LIST; pool $POOL; $MACHINE"
wanted identity && start_issuer
for store in $STORES; do
    round "$store"
done
STORE=""

write_meta
cp "$RESULTS" "$WORK/meta.json" "$LATEST/"
log "report (work files kept in $WORK)"
echo
status=0
python3 "$ROOT/bench/report.py" render "$WORK" "$DOC" || status=$?
echo
log "done in ${SECONDS}s; table written to docs/benchmarks.md and raw results to bench/latest/"
if ((INVARIANT_FAILURES > 0)); then
    loud "$INVARIANT_FAILURES invariant check(s) FAILED: see above"
    exit 2
fi
exit "$status"
