#!/usr/bin/env bash
# `make bench-cluster`: the scale-out targets of issue 18, each measured beside its ceiling in
# the same run and printed as met or missed (docs/benchmarks.md, "Scale-out (make
# bench-cluster)"):
#
#   1. Through HAProxy to three instances (the reference deployment, deploy/cluster.sh, with a
#      Redis Cluster): GET /health/live through the same HAProxy is the ceiling; token issue
#      (a new user each request) >= 0.5 x it, polls of WAITING tokens >= 0.8 x it, at each
#      connection count, with p50/p99/max.
#   2. Token issue on one instance (the release binary on a free loopback port of this
#      namespace, a database of its own, QUEUE_STORE=redis) with REDIS_URL the cluster's node
#      list against REDIS_URL one Redis (a private redis-server configured as the cluster's
#      nodes are, minus cluster mode): cluster >= 0.8 x one Redis, same connections, same
#      duration, in turns cluster, one, one, cluster (a drift of the machine's load weighs on
#      both sides alike; report.py's merge_repeats sums each side's turns).
#   3. Redis memory per waiting buyer: used_memory of the master that holds room main's line,
#      before and after BENCH_CLUSTER_LINE waiting tokens are appended to it in the adapter's
#      layout (bench/redisq.py, pipelined), against <= 200 bytes each.
#
# The deployment is brought up with CLUSTER_ID=BENCH_CLUSTER_ID and torn down at the end, even
# on failure or Ctrl-C; so are the one-instance servers, the private Redis and the database.
# Rate limiting: every host gets ISSUE_RATE_PER_MIN=0 (CLUSTER_EXTRA_ENV), and the run checks
# the rendered host environments say so; HAProxy sets X-Forwarded-For and the hosts trust it
# (TRUSTED_PROXIES), so a limit would count wrk's one address. Any 429 is an unexpected answer.
# Admission of room main is paused for the run, so polled tokens stay WAITING.
#
# Results: one JSON line per measurement in $WORK/results.jsonl (the records of bench/run.sh,
# with "store" naming the side: haproxy, one-cluster, one-redis, memory), a table on stdout.
#
# Settings (environment): BENCH_CLUSTER_ID (7), BENCH_CONNECTIONS ("64 16"),
# BENCH_ENDPOINT_SECS (5), BENCH_HEALTH_SECS (4), BENCH_CLUSTER_LINE (100000),
# BENCH_WRK_THREADS (2), BENCH_DATABASE (concert_bench_cluster), CONCERT_BIN (the release
# binary), PGHOST/PGPORT/PGUSER (127.0.0.1/5432/postgres). Needs root (deploy/cluster.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
# The deployment is always the reference shape, whatever the calling shell has set for it.
unset CLUSTER_RUN CLUSTER_PORT CLUSTER_HOSTS CLUSTER_EXTRA_ENV CLUSTER_REDIS
ROOT=$(pwd)

CLUSTER_ID=${BENCH_CLUSTER_ID:-7}
CONNS_LIST=${BENCH_CONNECTIONS:-"64 16"}
ENDPOINT_SECS=${BENCH_ENDPOINT_SECS:-5}
HEALTH_SECS=${BENCH_HEALTH_SECS:-4}
LINE=${BENCH_CLUSTER_LINE:-100000}
WRK_MAX_THREADS=${BENCH_WRK_THREADS:-2}
DB=${BENCH_DATABASE:-concert_bench_cluster}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BIN=${CONCERT_BIN:-$TARGET_DIR/release/concert}
[[ $BIN == /* ]] || BIN="$ROOT/$BIN"
# The line's users: far from the ids the wrk scripts make up (bench.new_user_id).
LINE_BASE=50000001
# Polled tokens: every POLL_STEP-th of the line's second half, all deep behind its head.
POLL_STEP=5

WORK=$(mktemp -d /tmp/concert-bench-cluster.XXXXXX)
DATA="$WORK/data"
RESULTS="$WORK/results.jsonl"
mkdir -p "$DATA"
: >"$RESULTS"
NONCE=$((RANDOM * 32768 + RANDOM))
WRK_RUNS=0
STORE=""
CONNS=""
BASE_URL=""
CLUSTER_UP=0
SERVER_PIDS=()
REDIS_PID=""
DB_MADE=0

log() { printf '\033[1m[bench-cluster %3ss]\033[0m %s\n' "$SECONDS" "$*" >&2; }
loud() {
    printf '\n\033[1;31m!!! %s\033[0m\n\n' "$*" >&2
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wrk_threads() { echo $((CONNS < WRK_MAX_THREADS ? CONNS : WRK_MAX_THREADS)); }
cluster() { CLUSTER_ID=$CLUSTER_ID CONCERT_BIN=$BIN "$ROOT/deploy/cluster.sh" "$@"; }

# ------------------------------------------------------------------------------ tear-down

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${SERVER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $REDIS_PID ]]; then
        kill "$REDIS_PID" 2>/dev/null || true
    fi
    if ((DB_MADE == 1)); then
        psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if ((CLUSTER_UP == 1)); then
        log "tearing down cluster $CLUSTER_ID"
        cluster down >"$WORK/cluster-down.log" 2>&1 || loud "deploy/cluster.sh down failed (see $WORK/cluster-down.log)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------ wrk

# run_wrk PHASE KIND SCRIPT SECS [SCRIPT ARGS...] against BASE_URL with CONNS connections;
# KIND endpoint|health|warmup (a warm-up is not recorded). The record is bench/run.sh's.
run_wrk() {
    local phase=$1 kind=$2 script=$3 secs=$4
    shift 4
    local threads t0 t1 out result
    threads=$(wrk_threads)
    WRK_RUNS=$((WRK_RUNS + 1))
    t0=$EPOCHREALTIME
    out=$(LUA_PATH="$ROOT/bench/wrk/?.lua;;" WRK_THREADS=$threads BENCH_DATA_DIR="$DATA" BENCH_RUN_NONCE=$((NONCE + WRK_RUNS)) \
        timeout $((secs + 30)) wrk -t "$threads" -c "$CONNS" -d "${secs}s" --timeout 10s \
        -s "$ROOT/bench/wrk/$script" "$BASE_URL" -- "$@" 2>&1) || true
    t1=$EPOCHREALTIME
    [[ $kind == warmup ]] && return 0
    result=$(sed -n 's/^BENCH_RESULT //p' <<<"$out")
    if [[ -z $result ]]; then
        printf '%s\n' "$out" >&2
        loud "wrk produced no result for $STORE $phase at $CONNS connections"
        result=null
    fi
    printf '{"store":"%s","phase":"%s","kind":"%s","conns":%s,"t0":%s,"t1":%s,"result":%s,"load":"%s"}\n' \
        "$STORE" "$phase" "$kind" "$CONNS" "$t0" "$t1" "$result" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"
    python3 - "$STORE" "$phase" "$CONNS" "$result" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[4]) or {}
print(f"           {sys.argv[1]:<11} {sys.argv[2]:<7} c={sys.argv[3]:<3} {r.get('rps', 0):>9,.0f} req/s  "
      f"p50 {r.get('p50_ms', 0):7.2f}  p99 {r.get('p99_ms', 0):7.2f}  max {r.get('max_ms', 0):7.1f} ms  "
      f"{r.get('statuses')}")
EOF
}

# ------------------------------------------------------------------------------ 0. tools

for tool in wrk curl python3 psql redis-server redis-cli haproxy; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench-cluster: $tool is required" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "bench-cluster: no binary at $BIN (make build, or set CONCERT_BIN)" >&2; exit 1; }
((EUID == 0)) || { echo "bench-cluster: needs root (deploy/cluster.sh makes network namespaces)" >&2; exit 1; }

SECONDS=0
log "work files in $WORK; binary $BIN; cluster $CLUSTER_ID; connections $CONNS_LIST"

# ------------------------------------------------------------------ 1. the deployment

# No issue limit on any host: wrk is one client address, and HAProxy's X-Forwarded-For (trusted
# by the hosts) would make a limit count it as one buyer.
printf 'ISSUE_RATE_PER_MIN=0\n' >"$WORK/extra.env"
# Tearing down is `deploy/cluster.sh down`, which removes whatever carries this cluster id: so
# the id must be free before the run starts, or the tear-down would remove someone else's
# deployment. Once it is free, everything of this id that exists later is this run's.
RUN_DIR=/tmp/concert-cluster-$CLUSTER_ID
front=$((17080 + 100 * CLUSTER_ID))
if [[ -e $RUN_DIR ]] || ip netns list 2>/dev/null | grep -q "^concert$CLUSTER_ID-" ||
    ip link show "cc$CLUSTER_ID-br" >/dev/null 2>&1 || ip -4 -o addr show | grep -qF " 10.77.$CLUSTER_ID." ||
    ss -Hltn "( sport = :$front or sport = :$((front + 1)) )" | grep -q .; then
    loud "cluster $CLUSTER_ID is in use (by another run or deployment); set BENCH_CLUSTER_ID to a free id (0..99)"
    exit 1
fi
log "bringing up the reference deployment (deploy/cluster.sh up, CLUSTER_ID=$CLUSTER_ID, Redis Cluster)"
CLUSTER_UP=1
CLUSTER_EXTRA_ENV="$WORK/extra.env" CLUSTER_REDIS=cluster cluster up 2>"$WORK/cluster-up.log" ||
    { tail -n 20 "$WORK/cluster-up.log" >&2; loud "deploy/cluster.sh up failed"; exit 1; }
# CLUSTER_URL, ADMIN_TOKEN, REDIS_URL (the node list), CLUSTER_HOST_URLS, CLUSTER_REDIS, ...
CLUSTER_URL=""
eval "$(cluster env)"
log "deployment up in ${SECONDS}s: $CLUSTER_URL, hosts $CLUSTER_HOST_URLS"
rate=$(cat "$RUN_DIR"/hosts/h*.env | grep -c '^ISSUE_RATE_PER_MIN=0$' || true)
proxies=$(grep -h '^TRUSTED_PROXIES=' "$RUN_DIR"/hosts/h*.env | sort -u | tr '\n' ' ')
hosts=$(find "$RUN_DIR/hosts" -name "h*.env" | wc -l)
printf '{"store":"haproxy","kind":"config","hosts":%s,"issue_rate_zero":%s,"trusted_proxies":"%s","redis":"%s"}\n' \
    "$hosts" "$rate" "${proxies% }" "$CLUSTER_REDIS" >>"$RESULTS"
((rate == hosts)) || { loud "not every host has ISSUE_RATE_PER_MIN=0"; exit 1; }
log "every host has ISSUE_RATE_PER_MIN=0 (${proxies% }); Redis $CLUSTER_REDIS"

admin() { # method path [json]
    curl -fsS --max-time 10 -X "$1" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
        ${3:+--data "$3"} "$CLUSTER_URL$2"
}
# The line stays put: polled tokens are WAITING for the whole run.
admin PATCH /admin/queue '{"paused":true}' >/dev/null || { loud "PATCH /admin/queue failed"; exit 1; }
# One token through the API, so the adapter has made room main's keys before the memory is read.
curl -fsS -o /dev/null --max-time 10 -H 'Content-Type: application/json' \
    --data '{"userId":"00000000-0000-4000-8000-000000000001"}' "$CLUSTER_URL/queue/tokens" ||
    { loud "the first token could not be issued"; exit 1; }

# --------------------------------------------------------- 3. memory per waiting buyer

MASTER_PORT=$(cluster redis-master-of main 2>/dev/null)
REDIS_HOST=${REDIS_URL%%,*}
REDIS_HOST=${REDIS_HOST#redis://}
REDIS_HOST=${REDIS_HOST%%:*}
[[ -n $MASTER_PORT ]] || { loud "no master found for room main"; exit 1; }
mem() { REDISQ_HOST=$REDIS_HOST python3 "$ROOT/bench/redisq.py" memory "$MASTER_PORT"; }
slot=$(redis-cli -h "$REDIS_HOST" -p "$MASTER_PORT" cluster keyslot '{concert}')
mem0=$(mem)
t0=$SECONDS
log "appending $LINE waiting tokens to room main's line on master $REDIS_HOST:$MASTER_PORT (slot $slot)"
REDISQ_HOST=$REDIS_HOST python3 "$ROOT/bench/redisq.py" waiting "$MASTER_PORT" concert "$LINE_BASE" $((LINE_BASE + LINE - 1))
mem1=$(mem)
waiting=$(curl -fsS --max-time 10 -H "Authorization: Bearer $ADMIN_TOKEN" "$CLUSTER_URL/admin/queue" |
    python3 -c 'import json, sys; d = json.load(sys.stdin); print(d.get("waiting", d.get("waitingCount", "null")))' 2>/dev/null || echo null)
printf '{"store":"memory","kind":"redis_memory","master":"%s:%s","slot":%s,"line":%s,"before":%s,"after":%s,"admin_waiting":%s}\n' \
    "$REDIS_HOST" "$MASTER_PORT" "$slot" "$LINE" "$mem0" "$mem1" "${waiting:-null}" >>"$RESULTS"
log "used_memory $mem0 -> $mem1 bytes for $LINE waiting ($(((mem1 - mem0) / LINE)) bytes each) in $((SECONDS - t0)) s"

# The polled tokens: every POLL_STEP-th of the line's second half, as the line stores them (a
# value carries its token's seq, which the line gave it: redisq.py `tokens` reads them back).
REDISQ_HOST=$REDIS_HOST python3 "$ROOT/bench/redisq.py" tokens "$MASTER_PORT" concert \
    "$((LINE_BASE + LINE / 2))-$((LINE_BASE + LINE - 1)):$POLL_STEP" >"$DATA/poll.txt"
if grep -qx -- - "$DATA/poll.txt"; then loud "a polled user has no token in room main's line"; exit 1; fi
probe=$(curl -fsS --max-time 5 -H "Authorization: Bearer $(head -1 "$DATA/poll.txt")" "$CLUSTER_URL/queue/token" || true)
grep -q '"WAITING"' <<<"$probe" || { loud "a polled token is not WAITING: $probe"; exit 1; }
log "polled tokens: $(wc -l <"$DATA/poll.txt") WAITING ones ($probe)"

# Every instance polls every polled token once before the measurement, as in a real line where
# everyone polls every few seconds and a balancer without affinity sends each poll anywhere:
# each instance's poll cache then holds them all (bench/run.sh's warm_cache, per host, each
# wrk thread leaving a mark once it has been through its share).
warm_host() { # url
    local pid i
    rm -f "$DATA"/wrapped.*
    LUA_PATH="$ROOT/bench/wrk/?.lua;;" WRK_THREADS=$WRK_MAX_THREADS BENCH_DATA_DIR="$DATA" BENCH_RUN_NONCE=$NONCE \
        BENCH_WRAP_MARK="$DATA/wrapped." wrk -t "$WRK_MAX_THREADS" -c 32 -d 120s --timeout 10s \
        -s "$ROOT/bench/wrk/poll.lua" "$1" -- poll.txt >/dev/null 2>&1 &
    pid=$!
    for i in $(seq 1 1200); do
        (($(find "$DATA" -name 'wrapped.*' | wc -l) >= WRK_MAX_THREADS)) && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
        : "$i"
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
t0=$SECONDS
for url in $CLUSTER_HOST_URLS; do warm_host "$url"; done
log "poll caches of every instance warmed in $((SECONDS - t0)) s"

# ------------------------------------------------------------ 1. through HAProxy

STORE=haproxy
BASE_URL=$CLUSTER_URL
for CONNS in $CONNS_LIST; do
    run_wrk health warmup health.lua 1
    run_wrk health health health.lua "$HEALTH_SECS"
    run_wrk poll_waiting warmup poll.lua 1 poll.txt
    run_wrk poll_waiting endpoint poll.lua "$ENDPOINT_SECS" poll.txt
    run_wrk issue endpoint issue.lua "$ENDPOINT_SECS"
done
CONNS=""
for n in $CLUSTER_HOST_URLS; do
    curl -fs -o /dev/null --max-time 2 "$n/health/ready" || loud "instance $n is not ready after the HAProxy phase"
done

# ------------------------------------------- 2. one instance: Redis Cluster vs one Redis

log "fresh database $DB for the one-instance servers"
PGOPTIONS='-c client_min_messages=warning' psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)"
DB_MADE=1
DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB" "$BIN" migrate >"$WORK/migrate.log" 2>&1 ||
    { cat "$WORK/migrate.log" >&2; exit 1; }

# One Redis configured as the cluster's nodes are (append-only file every second, no
# eviction), minus cluster mode, on a free loopback port.
REDIS_PORT=$(free_port)
mkdir -p "$WORK/redis"
sed -e "s|{{ADDR}}|127.0.0.1|; s|{{PORT}}|$REDIS_PORT|; s|{{DIR}}|$WORK/redis|g; s|{{CLUSTER}}|no|; s|^daemonize yes|daemonize no|" \
    "$ROOT/deploy/redis/node.conf.template" >"$WORK/redis/redis.conf"
redis-server "$WORK/redis/redis.conf" &
REDIS_PID=$!
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" ping >/dev/null || { loud "the private redis-server did not start"; exit 1; }

declare -A URL_OF
start_one() { # name redis-url
    local port pid
    port=$(free_port)
    env DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB" BIND_ADDR="127.0.0.1:$port" QUEUE_STORE=redis \
        REDIS_URL="$2" REDIS_KEY_PREFIX="bench-one" ISSUE_RATE_PER_MIN=0 DATABASE_POOL_SIZE=16 \
        RUST_LOG=warn LOG_FORMAT=json "$BIN" serve >>"$WORK/server-$1.log" 2>&1 &
    pid=$!
    SERVER_PIDS+=("$pid")
    for _ in $(seq 1 150); do
        if curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$port/health/ready"; then
            URL_OF[$1]="http://127.0.0.1:$port"
            log "one instance ($1) up on 127.0.0.1:$port, REDIS_URL=$2"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    tail -n 20 "$WORK/server-$1.log" >&2
    loud "the one-instance server $1 did not become ready"
    exit 1
}
start_one one-cluster "$REDIS_URL"
start_one one-redis "redis://127.0.0.1:$REDIS_PORT"

for CONNS in $CONNS_LIST; do
    for STORE in one-cluster one-redis; do
        BASE_URL=${URL_OF[$STORE]}
        run_wrk issue warmup issue.lua 1
    done
    for STORE in one-cluster one-redis one-redis one-cluster; do
        BASE_URL=${URL_OF[$STORE]}
        run_wrk issue endpoint issue.lua "$ENDPOINT_SECS"
    done
done
STORE=""
CONNS=""

printf '{"kind":"meta","machine":"%s","nproc":%s,"secs":%s,"endpoint_secs":%s,"health_secs":%s,"loadavg":"%s"}\n' \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs" "$(nproc)" "$SECONDS" \
    "$ENDPOINT_SECS" "$HEALTH_SECS" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"
log "measured in ${SECONDS}s (work files kept in $WORK)"
echo
python3 "$ROOT/bench/cluster_report.py" "$RESULTS"
