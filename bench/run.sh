#!/usr/bin/env bash
# `make bench`: load-tests the release `concert` binary on PostgreSQL over loopback and prints
# one table of throughput, latency and errors per endpoint beside the two ceilings measured in
# the same run (/health/live under the same load; pgbench running the endpoint's SQL with the
# same number of clients), the server's peak RSS, the invariants after each write phase and
# the targets as met or missed. The table, a chart and the machine go into
# docs/benchmarks.md; docs/benchmarks.md explains the method.
#
# Bounds: every measurement is at most 15 s (endpoint + /health/live + pgbench of one phase
# together stay under 15 s with the defaults), the whole run at most 5 minutes (later phases
# are skipped loudly past BENCH_BUDGET_SECS), and traffic only goes to 127.0.0.1.
#
# Settings (environment): BENCH_PHASES (all), BENCH_CONNECTIONS (16), BENCH_WRK_THREADS (2), BENCH_ENDPOINT_SECS
# (5), BENCH_HEALTH_SECS (3), BENCH_PGBENCH_SECS (3, each of two query modes), BENCH_DATABASE (concert_bench),
# BENCH_RUST_LOG (warn), BENCH_BUDGET_SECS (280), PGHOST/PGPORT/PGUSER (127.0.0.1/5432/postgres).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

CONNECTIONS=${BENCH_CONNECTIONS:-16}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
ENDPOINT_SECS=${BENCH_ENDPOINT_SECS:-5}
HEALTH_SECS=${BENCH_HEALTH_SECS:-3}
PGBENCH_SECS=${BENCH_PGBENCH_SECS:-3}
BUDGET_SECS=${BENCH_BUDGET_SECS:-280}
# A subset of phases, for profiling one endpoint (e.g. BENCH_PHASES="poll_1k pay").
PHASES=${BENCH_PHASES:-"poll_1k poll_1m issue seats reserve_spread reserve_contended pay charge funnel"}
DB=${BENCH_DATABASE:-concert_bench}
SERVER_LOG_LEVEL=${BENCH_RUST_LOG:-warn}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
DATABASE_URL_BENCH="postgres://${PGUSER}@${PGHOST}:${PGPORT}/${DB}"

# The catalogue: 120 concerts x 10 schedules x 200 seats = 240,000 seats (pools in
# bench/sql/prepare.sql).
CONCERTS=120
PER_CONCERT=10
SEATS=200
SCHEDULES=$((CONCERTS * PER_CONCERT))

BIN="$ROOT/target/release/concert"
DOC="$ROOT/docs/benchmarks.md"
LATEST="$ROOT/bench/latest"
WORK=$(mktemp -d /tmp/concert-bench.XXXXXX)
DATA="$WORK/data"
RESULTS="$WORK/results.jsonl"
mkdir -p "$DATA" "$WORK/pgbench" "$LATEST"
: >"$RESULTS"
NONCE=$((RANDOM * 32768 + RANDOM))

SERVER_PID=""
SAMPLER_PID=""
SERVER_NAME=""
SERVER_ENV=()
SERVER_CRASHES=0
DMESG_MARK=0
PORT=""
BASE_URL=""
HWM_MB=0
INVARIANT_FAILURES=0

log() { printf '\033[1m[bench %3ss]\033[0m %s\n' "$SECONDS" "$*" >&2; }
loud() {
    printf '\n\033[1;31m!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
    printf '!!! %s\n' "$@" >&2
    printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\033[0m\n\n' >&2
}
psql_db() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

# ------------------------------------------------------------------------------------ tools

ensure_tools() {
    if ! command -v wrk >/dev/null 2>&1; then
        log "installing wrk (Debian package)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    fi
    local tool
    for tool in pgbench psql curl python3 wrk; do
        command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool is required" >&2; exit 1; }
    done
    if [[ ! -x "$BIN" ]] || [[ -n "$(find "$ROOT/crates" "$ROOT/migrations" "$ROOT/Cargo.lock" -newer "$BIN" -print -quit)" ]]; then
        log "building the release binary"
        cargo build --release -p app --bin concert
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

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

# start_server NAME [VAR=value ...]: serves on a free loopback port with the given settings.
start_server() {
    local name=$1
    shift
    SERVER_NAME=$name
    SERVER_ENV=("$@")
    # Kernel messages after this line are about this server's life (a segfault names a thread).
    DMESG_MARK=$(dmesg 2>/dev/null | wc -l || echo 0)
    PORT=$(free_port)
    BASE_URL="http://127.0.0.1:$PORT"
    env DATABASE_URL="$DATABASE_URL_BENCH" BIND_ADDR="127.0.0.1:$PORT" \
        DATABASE_POOL_SIZE="$CONNECTIONS" RUST_LOG="$SERVER_LOG_LEVEL" LOG_FORMAT=json "$@" \
        "$BIN" serve >>"$WORK/server-$name.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 150); do
        if curl -fsS -o /dev/null --max-time 1 "$BASE_URL/health/ready"; then
            sample_rss "$SERVER_PID" &
            SAMPLER_PID=$!
            log "server $name up on $BASE_URL (pid $SERVER_PID)"
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.2
        : "$i"
    done
    tail -n 30 "$WORK/server-$name.log" >&2 || true
    loud "the server did not become ready"
    exit 1
}

stop_server() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        local hwm
        hwm=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
        HWM_MB=$(python3 -c "print(max($HWM_MB, ${hwm:-0} / 1024))")
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
    if [[ -n $SAMPLER_PID ]]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
    SAMPLER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# -------------------------------------------------------------------------------- measuring

record() { # phase kind t0 t1 result-json cpu-before cpu-after
    printf '{"phase":"%s","kind":"%s","t0":%s,"t1":%s,"result":%s,"cpu":[%s,%s]}\n' \
        "$1" "$2" "$3" "$4" "$5" "${6// /,}" "${7// /,}" >>"$RESULTS"
}

# "busy ours" CPU ticks, to tell how much other work shared the machine with a measurement.
cpu_snap() { python3 "$ROOT/bench/report.py" cpu "${SERVER_PID:-0}" "$$"; }

# run_wrk PHASE KIND SCRIPT THREADS SECS [SCRIPT ARGS...]: PATH is /health/live for KIND=health.
run_wrk() {
    local phase=$1 kind=$2 script=$3 threads=$4 secs=$5
    shift 5
    local t0 t1 out result c0 c1
    c0=$(cpu_snap)
    t0=$EPOCHREALTIME
    out=$(LUA_PATH="$ROOT/bench/wrk/?.lua;;" WRK_THREADS=$threads BENCH_DATA_DIR="$DATA" BENCH_RUN_NONCE=$NONCE \
        timeout $((secs + 15)) wrk -t "$threads" -c "$CONNECTIONS" -d "${secs}s" --timeout 10s \
        -s "$ROOT/bench/wrk/$script" "$BASE_URL" -- "$@" 2>&1) || true
    t1=$EPOCHREALTIME
    c1=$(cpu_snap)
    result=$(sed -n 's/^BENCH_RESULT //p' <<<"$out")
    if [[ -z $result ]]; then
        printf '%s\n' "$out" >&2
        loud "wrk produced no result for $phase ($kind)"
        result=null
    fi
    record "$phase" "$kind" "$t0" "$t1" "$result" "$c0" "$c1"
    python3 - "$phase" "$kind" "$result" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[3]) or {}
print(f"           {sys.argv[1]:<18} {sys.argv[2]:<8} {r.get('rps', 0):>9,.0f} req/s  "
      f"p50 {r.get('p50_ms', 0):7.2f} ms  p99 {r.get('p99_ms', 0):7.2f} ms  {r.get('statuses')}")
EOF
}

# run_pgbench PHASE KIND MODE SCRIPT [-D var=value ...]: MODE is pgbench's query mode;
# "prepared" is the database's ceiling for this SQL (parsed and planned once per connection),
# "extended" is what diesel's sql_query sends (an unnamed statement, planned every time).
run_pgbench() {
    local phase=$1 kind=$2 mode=$3 script=$4
    shift 4
    local t0 t1 c0 c1 result out="$WORK/pgbench/$phase-$mode.out" prefix="$WORK/pgbench/$phase-$mode.log"
    c0=$(cpu_snap)
    t0=$EPOCHREALTIME
    timeout $((PGBENCH_SECS + 20)) pgbench -n -M "$mode" -c "$CONNECTIONS" -j 2 -T "$PGBENCH_SECS" \
        -D clients="$CONNECTIONS" -D k=-1 "$@" -f "$ROOT/bench/pgbench/$script" \
        -l --log-prefix="$prefix" "$DB" >"$out" 2>&1 || true
    t1=$EPOCHREALTIME
    c1=$(cpu_snap)
    result=$(python3 "$ROOT/bench/report.py" pgbench "$prefix" "$out")
    if grep -q 'error' "$out"; then
        grep -m 5 'error' "$out" >&2
        loud "pgbench reported errors for $phase (see $out)"
    fi
    record "$phase" "$kind" "$t0" "$t1" "$result" "$c0" "$c1"
    python3 - "$phase" "$mode" "$result" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[3])
print(f"           {sys.argv[1]:<18} pgbench  {r.get('rps') or 0:>9,.0f} tx/s   "
      f"p50 {r.get('p50_ms') or 0:7.2f} ms  p99 {r.get('p99_ms') or 0:7.2f} ms  "
      f"failed {r.get('failed')}  ({sys.argv[2]})")
EOF
}

# Both pgbench modes of one phase; the second starts OFFSET items further into the phase's
# pool, so neither pays, reserves or issues what the other already did.
run_pgbench_both() { # PHASE SCRIPT OFFSET [-D ...]
    local phase=$1 script=$2 offset=$3
    shift 3
    run_pgbench "$phase" pgbench prepared "$script" -D offset=0 "$@"
    run_pgbench "$phase" pgbench_unprepared extended "$script" -D offset="$offset" "$@"
}

check_invariants() { # phase
    wanted "$1" || return 0
    local phase=$1 out ok=true detail
    out=$(psql_db -At -F ': ' -f "$ROOT/bench/sql/invariants.sql" 2>&1) || ok=false
    if grep -qv ': 0$' <<<"$out"; then ok=false; fi
    detail=$(tr '\n' ';' <<<"$out" | sed 's/"/'"'"'/g')
    if [[ $ok != true ]]; then
        INVARIANT_FAILURES=$((INVARIANT_FAILURES + 1))
        loud "INVARIANT VIOLATED after $phase:" "$out"
    else
        log "invariants hold after $phase"
    fi
    printf '{"phase":"%s","kind":"invariants","ok":%s,"detail":"%s"}\n' "$phase" "$ok" "$detail" >>"$RESULTS"
}

wanted() { [[ " $PHASES " == *" $1 "* ]]; }

# A server that died under load is a finding, not a reason to lose the rest of the run: say so
# loudly, record it (the report fails the "no crash" target), and start it again.
ensure_server_alive() { # phase
    if [[ -n $SERVER_PID ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
        local status=0
        wait "$SERVER_PID" 2>/dev/null || status=$?
        SERVER_CRASHES=$((SERVER_CRASHES + 1))
        loud "THE SERVER DIED during or before $1 (exit status $status$( ((status > 128)) && echo ", signal $((status - 128))"))" \
            "last log lines: $(tail -n 3 "$WORK/server-$SERVER_NAME.log" | tr '\n' ' ' | cut -c1-300)" \
            "kernel: $(dmesg 2>/dev/null | tail -n +$((DMESG_MARK + 1)) | grep -iE 'segfault|trap|oom|killed' | tail -n 1 || true)"
        printf '{"phase":"%s","kind":"crash","ok":false,"detail":"exit status %s"}\n' "$1" "$status" >>"$RESULTS"
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
        SERVER_PID=""
        SAMPLER_PID=""
        start_server "$SERVER_NAME-restarted" "${SERVER_ENV[@]}"
    fi
}

within_budget() { # phase
    if ((SECONDS > BUDGET_SECS)); then
        loud "time budget of ${BUDGET_SECS}s used up: skipping $1"
        return 1
    fi
}

# phase NAME WRK_SCRIPT WRK_DATA PGBENCH_SCRIPT PGBENCH_OFFSET [pgbench -D args...]
phase() {
    local name=$1 script=$2 data=$3 pgb=$4 offset=$5
    shift 5
    wanted "$name" || return 0
    within_budget "$name" || return 0
    log "phase $name"
    ensure_server_alive "$name"
    case $name in
        poll_* | seats)
            # Read-only phases start warm: 1 s of the same traffic, not recorded, so the
            # measurement sees the steady state rather than the first touch of each page.
            run_wrk "$name" warmup "$script" "$WRK_THREADS" 1 "$data" >/dev/null 2>&1
            sed -i '/"kind":"warmup"/d' "$RESULTS"
            ;;
    esac
    run_wrk "$name" endpoint "$script" "$WRK_THREADS" "$ENDPOINT_SECS" "$data"
    ensure_server_alive "$name"
    run_wrk "$name" health health.lua "$WRK_THREADS" "$HEALTH_SECS"
    ensure_server_alive "$name"
    run_pgbench_both "$name" "$pgb" "$offset" "$@"
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
    psql_db -v from=1000001 -v to=1001000 -f "$ROOT/bench/sql/waiting.sql"
    export_data poll_1k.txt "SELECT bench.tok(n) FROM generate_series(1000001, 1001000) n"
    export_data browse.txt "SELECT bench.tok(1 + i % 2000), bench.sched(1 + (i * 7) % $SCHEDULES) FROM generate_series(0, 9999) i"
    export_data spread.txt "SELECT bench.tok(1 + i % 2000), bench.sched(301 + i % 250), bench.seat(301 + i % 250, 1 + (i / 250) % $SEATS)
                            FROM generate_series(0, 49999) i"
    export_data contended.txt "SELECT bench.tok(1 + i % 2000), bench.sched(801), bench.seat(801, 1 + i % 8) FROM generate_series(0, 1999) i"
    export_data pay.txt "SELECT bench.tok(n), bench.res(n) FROM generate_series(10001, 40000) n"
    export_data charge.txt "SELECT bench.uid(n) FROM generate_series(100001, 110000) n"
    export_data funnel_schedules.txt "SELECT bench.sched(s) FROM generate_series(802, 1000) s"
    settle
}

# After a bulk load: vacuum now (else autovacuum does it during a phase) and checkpoint now
# (else the checkpointer flushes the load's pages during a phase).
settle() {
    psql_db -c "VACUUM (ANALYZE)" -c "CHECKPOINT"
}

machine() {
    local model mem
    model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
    mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
    MACHINE="$(nproc) × ${model:-unknown CPU}, $mem RAM, $(psql -X -At -d postgres -c 'SHOW server_version' | awk '{print "PostgreSQL " $1}')"
    MACHINE_DETAIL="$MACHINE; $(uname -sr); $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}'); shared_buffers $(psql -X -At -d postgres -c 'SHOW shared_buffers'), synchronous_commit $(psql -X -At -d postgres -c 'SHOW synchronous_commit')"
}

write_meta() {
    python3 - "$WORK/meta.json" <<EOF
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "machine": "$MACHINE",
    "machine_detail": "$MACHINE_DETAIL",
    "connections": $CONNECTIONS,
    "nproc": $(nproc),
    "clk_tck": $(getconf CLK_TCK),
    "wrk_threads": $WRK_THREADS,
    "endpoint_secs": $ENDPOINT_SECS,
    "health_secs": $HEALTH_SECS,
    "pgbench_secs": $PGBENCH_SECS,
    "rss_hwm_mb": $HWM_MB,
    "total_secs": $SECONDS,
    "build_secs": $BUILD_SECS,
    "invariant_failures": $INVARIANT_FAILURES,
    "server_crashes": $SERVER_CRASHES,
}, open(sys.argv[1], "w"), indent=1)
EOF
}

# -------------------------------------------------------------------------------------- run

ensure_tools
# The budget and the reported run time cover the bench itself, not compiling.
BUILD_SECS=$SECONDS
SECONDS=0
machine
log "work files in $WORK; $CONNECTIONS connections, $MACHINE"
prepare_database

# Server A: production-like queue settings (admit 100 a minute), so the line stays put while
# the poll phases measure it.
start_server main QUEUE_ADMIT_INTERVAL_SECS=60 QUEUE_ADMIT_BATCH=100

phase poll_1k poll.lua poll_1k.txt poll.sql 0 -D base=1000001 -D step=1 -D count=1000

if wanted poll_1m && within_budget "the 1,000,000-token line"; then
    log "growing the line to 1,000,000 waiting tokens"
    psql_db -v from=1001001 -v to=2000000 -f "$ROOT/bench/sql/waiting.sql"
    export_data poll_1m.txt "SELECT bench.tok(1000001 + i * 100) FROM generate_series(0, 9999) i"
    settle
    phase poll_1m poll.lua poll_1m.txt poll.sql 0 -D base=1000001 -D step=100 -D count=10000
fi

phase issue issue.lua - issue.sql 1000000 -D base=3000001
phase seats seats.lua browse.txt seats.sql 0 -D schedules="$SCHEDULES"
phase reserve_spread reserve.lua spread.txt reserve.sql 25000 -D sbase=551 -D nsched=250 -D numbase=1 -D nseats="$SEATS"
check_invariants reserve_spread
phase reserve_contended reserve.lua contended.txt reserve.sql 0 -D sbase=801 -D nsched=1 -D numbase=9 -D nseats=8
check_invariants reserve_contended
phase pay pay.lua pay.txt pay.sql 15000 -D base=40001
check_invariants pay
phase charge charge.lua charge.txt charge.sql 0
check_invariants charge
ensure_server_alive "the end of the main phases"
stop_server

# Server B for the funnel: an admission tick every second, big enough for everyone, after the
# waiting line of the poll phases is cleared (truncated and re-filled with the tokens that are
# not WAITING; the cursor moves past the removed numbers so positions stay exact).
if wanted funnel && within_budget funnel; then
    log "clearing the waiting line for the funnel"
    psql_db <<'EOF'
BEGIN;
CREATE TEMP TABLE keep ON COMMIT DROP AS SELECT * FROM queue_tokens WHERE status <> 'WAITING';
TRUNCATE queue_tokens;
INSERT INTO queue_tokens SELECT * FROM keep;
UPDATE queue_admission SET admitted_through = (SELECT last_seq FROM queue_counter), last_admission_at = NULL;
COMMIT;
EOF
    start_server funnel QUEUE_ADMIT_INTERVAL_SECS=1 QUEUE_ADMIT_BATCH=100000 SCHEDULER_CHECK_MILLIS=100
    log "phase funnel"
    run_wrk funnel endpoint funnel.lua "$CONNECTIONS" "$ENDPOINT_SECS" funnel_schedules.txt
    ensure_server_alive funnel
    run_wrk funnel health health.lua "$CONNECTIONS" "$HEALTH_SECS"
    ensure_server_alive funnel
    run_pgbench_both funnel funnel.sql 20000 -D base=5000001 -D sbase=1001 -D nsched=200 -D nseats="$SEATS"
    check_invariants funnel
    stop_server
fi

write_meta
cp "$RESULTS" "$WORK/meta.json" "$LATEST/"
log "report (work files kept in $WORK)"
echo
status=0
python3 "$ROOT/bench/report.py" render "$WORK" "$DOC" "$LATEST/throughput.svg" || status=$?
echo
log "done in ${SECONDS}s; table and chart written to docs/benchmarks.md and bench/latest/"
if ((INVARIANT_FAILURES > 0)); then
    loud "$INVARIANT_FAILURES invariant check(s) FAILED: see above"
    exit 2
fi
exit "$status"
