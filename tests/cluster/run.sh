#!/usr/bin/env bash
# `make test-cluster`: the reference deployment works (deploy/cluster.sh, docs/operations.md,
# "The reference deployment"). Brings a cluster up, and through HAProxy:
#   1. issues tokens and polls them: every answer right, requests spread over every host (by
#      HAProxy's X-Served-By, checked against each host's own /metrics), a token issued on
#      one host is polled on another (the hosts share the line);
#   2. kills one instance (SIGKILL): HAProxy takes it out within its health checks, and no
#      request fails, neither before it is marked down (retried on another host) nor after;
#   3. starts it again: it is back in rotation;
#   4. drains one for a deploy (the documented procedure): no new request reaches it, it stops
#      gracefully, starts again and is put back;
#   5. kills the Redis master of room main: buyers get the service's own 503 (HAProxy fails
#      open to the instances rather than answering for them) until it is back, or, on a Redis
#      Cluster, until its replica took over (within 10 s, no restart), while a room whose line
#      is on another master answers 201 throughout; then everything is served again;
#   6. the database holds no violated invariant;
# then tears it down and checks that nothing is left: no namespace, link, process, listener
# or file; and that a second teardown is harmless.
#
# A bash script rather than a Rust test: what is under test is the deployment (ip, HAProxy,
# the scripts), not code of the workspace; it needs root and minutes, which `cargo test
# --workspace` must not pick up. It fails, never skips, when it cannot make network
# namespaces or lacks a tool.
#
# Settings: CONCERT_BIN (target/release/concert), CLUSTER_ID (9, so as not to meet a
# developer's `make cluster`, which uses 0), CLUSTER_REDIS (auto; see deploy/cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

export CLUSTER_ID=${CLUSTER_ID:-9}
export CLUSTER_HOSTS=3
export CONCERT_BIN=${CONCERT_BIN:-${CARGO_TARGET_DIR:-target}/release/concert}
export CLUSTER_RUN=/tmp/concert-cluster-$CLUSTER_ID
cluster=deploy/cluster.sh
started=$(date +%s)

step() { printf '\n==> %s\n' "$*"; }
fail() {
    printf '\nFAIL: %s\n' "$*" >&2
    exit 1
}
check() {
    local what=$1
    shift
    "$@" || fail "$what"
    echo "ok: $what"
}

# ---- preflight: fail, never skip --------------------------------------------------------

((EUID == 0)) || fail "the cluster test must run as root: it makes network namespaces, veth pairs and a bridge"
for tool in ip haproxy redis-server redis-cli curl; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (Debian: apt-get install iproute2 haproxy redis-server curl)"
done
[[ -x $CONCERT_BIN ]] || fail "no binary at $CONCERT_BIN (make build)"
probe=concert$CLUSTER_ID-probe
if ! err=$(ip netns add "$probe" 2>&1); then
    fail "cannot make a network namespace (ip netns add: $err): this machine cannot run the reference deployment"
fi
ip netns del "$probe"

# What a crashed earlier run of this test left.
$cluster down >/dev/null 2>&1 || true

torn_down=0
body=$(mktemp)
on_exit() {
    local rc=$?
    rm -f "$body"
    if ((torn_down == 0)); then
        if ((rc != 0)) && [[ -d $CLUSTER_RUN ]]; then
            echo "--- status at the failure" >&2
            $cluster status >&2 2>&1 || true
            # Why the instances answered 5xx, the latest last (the tails below rarely show it).
            echo "--- the last causes of 5xx answers the hosts logged" >&2
            cat "$CLUSTER_RUN"/logs/h*.log 2>/dev/null | grep -E '"answering 503|internal error' | sort |
                tail -n 12 | sed -E 's/.*"timestamp":"([^"]*)".*"cause":"([^"]*)".*/  \1 \2/' >&2 || true
            for log in "$CLUSTER_RUN"/logs/h*.log "$CLUSTER_RUN"/logs/haproxy.log; do
                [[ -f $log ]] || continue
                echo "--- last lines of $log" >&2
                tail -n 5 "$log" >&2
            done
        fi
        $cluster down >&2 || true
    fi
    exit "$rc"
}
trap on_exit EXIT

# ---- requests through HAProxy -----------------------------------------------------------

# `issue`: POST /queue/tokens for a new user. Sets STATUS, SERVED_BY and TOKEN.
issue() {
    local user out
    user=$(cat /proc/sys/kernel/random/uuid)
    out=$(curl -s --max-time 5 -o "$body" -w '%{http_code} %header{x-served-by}' -X POST "$CLUSTER_URL/queue/tokens" \
        -H 'Content-Type: application/json' -d "{\"userId\":\"$user\"}") || out="000 -"
    read -r STATUS SERVED_BY <<<"$out"
    SERVED_BY=${SERVED_BY:--}
    TOKEN=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' "$body")
}

# `poll TOKEN`: GET /queue/token. Sets STATUS, SERVED_BY, and POLLED (the token answered).
poll() {
    local out
    out=$(curl -s --max-time 5 -o "$body" -w '%{http_code} %header{x-served-by}' "$CLUSTER_URL/queue/token" \
        -H "Authorization: Bearer $1") || out="000 -"
    read -r STATUS SERVED_BY <<<"$out"
    SERVED_BY=${SERVED_BY:--}
    POLLED=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' "$body")
}

declare -A served=()
requests=0
errors=()
# One issue and one poll of the new token; counts who served them and what failed.
round() {
    local issued_by
    issue
    requests=$((requests + 1))
    served[$SERVED_BY]=$((${served[$SERVED_BY]:-0} + 1))
    if [[ $STATUS != 201 || -z $TOKEN ]]; then
        errors+=("POST /queue/tokens: $STATUS via $SERVED_BY: $(head -c 300 "$body")")
        return 0
    fi
    issued_by=$SERVED_BY
    poll "$TOKEN"
    requests=$((requests + 1))
    served[$SERVED_BY]=$((${served[$SERVED_BY]:-0} + 1))
    if [[ $STATUS != 200 || $POLLED != "$TOKEN" ]]; then
        errors+=("GET /queue/token: $STATUS via $SERVED_BY: $(head -c 300 "$body")")
    elif [[ $SERVED_BY != "$issued_by" ]]; then
        crossed=$((crossed + 1))
    fi
}
reset_counts() {
    served=()
    requests=0
    errors=()
    crossed=0
}
show_counts() {
    local k line=""
    for k in $(printf '%s\n' "${!served[@]}" | sort); do line+="$k=${served[$k]} "; done
    echo "   $requests requests, served by: ${line:-nobody}, errors: ${#errors[@]}"
    if ((${#errors[@]})); then printf '   %s\n' "${errors[@]:0:5}"; fi
}

# The POST /queue/tokens answered 201 by one host, from its own /metrics.
issued_on() {
    curl -sf --max-time 5 -H "Authorization: Bearer $ADMIN_TOKEN" "http://10.77.$CLUSTER_ID.$((10 + $1)):8080/metrics" |
        awk '/^http_requests_total\{/ && /method="POST"/ && /route="\/queue\/tokens"/ && /status="201"/ { n += $NF }
             END { print n + 0 }'
}

# ---- 0. the unit a production host runs ---------------------------------------------------

step "the systemd unit of one host"
command -v systemd-analyze >/dev/null 2>&1 || fail "systemd-analyze is not installed (Debian: apt-get install systemd)"
unit_dir=$(mktemp -d)
sed -e "s|^ExecStart=/usr/local/bin/concert|ExecStart=$(realpath "$CONCERT_BIN")|" \
    -e "s|^EnvironmentFile=/etc/concert/concert.env|EnvironmentFile=$PWD/deploy/systemd/concert.env|" \
    deploy/systemd/concert.service >"$unit_dir/concert.service"
# verify exits 0 on an unknown or misplaced key; it only says so: any word from it fails.
verify_out=$(systemd-analyze verify "$unit_dir/concert.service" 2>&1) || fail "systemd-analyze verify: $verify_out"
check "deploy/systemd/concert.service verifies without a warning${verify_out:+: $verify_out}" test -z "$verify_out"
exposure=$(systemd-analyze security --offline=yes "$unit_dir/concert.service" 2>/dev/null |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
rm -rf "$unit_dir"
echo "   exposure level (systemd-analyze security): ${exposure:-?}"
check "its sandbox keeps the exposure level at 2.0 or below" awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }'

# ---- 1. up, spread, shared line ----------------------------------------------------------

step "bring the cluster up (CLUSTER_ID=$CLUSTER_ID)"
$cluster up
eval "$($cluster env)"
echo "   $CLUSTER_URL, Redis: $CLUSTER_REDIS"

step "issue 30 tokens and poll each through HAProxy"
reset_counts
for _ in $(seq 1 30); do round; done
show_counts
check "every issue answered 201 and every poll 200 with its token" test "${#errors[@]}" -eq 0
for n in 1 2 3; do
    check "h$n served some of them" test "${served[h$n]:-0}" -ge 5
done
check "only the checked servers served them (no fail-open)" test "$(( ${served[h1]:-0} + ${served[h2]:-0} + ${served[h3]:-0} ))" -eq "$requests"
check "tokens issued on one host were polled on another (one shared line): $crossed of 30" test "$crossed" -ge 10
# X-Served-By is HAProxy's word; each host's own counters must say the same.
total=0
for n in 1 2 3; do
    on_host=$(issued_on "$n")
    total=$((total + on_host))
    echo "   h$n counted $on_host tokens issued"
    check "h$n issued some of the tokens by its own metrics" test "$on_host" -ge 1
done
check "the hosts' metrics add up to the 30 tokens issued" test "$total" -eq 30

# ---- 2. an instance dies -----------------------------------------------------------------

step "kill h2 (SIGKILL) and keep sending requests"
reset_counts
$cluster kill-instance 2 KILL
killed_at=$(date +%s%N)
down_after=""
while [[ -z $down_after ]]; do
    round
    if [[ $($cluster haproxy-state 2) == DOWN ]]; then
        down_after=$((($(date +%s%N) - killed_at) / 1000000))
    elif (($(date +%s%N) - killed_at > 10000000000)); then
        fail "HAProxy still routes to h2 10 s after it died"
    fi
done
echo "   HAProxy marked h2 DOWN after $down_after ms"
show_counts
# Checks every 1 s (500 ms after a first failure), down after 2 failures, 1 s check timeout.
check "h2 left the rotation within the health checks' window (<= 3500 ms)" test "$down_after" -le 3500
check "no request failed between the kill and h2 marked down (retried on another host)" test "${#errors[@]}" -eq 0

reset_counts
for _ in $(seq 1 15); do round; done
show_counts
check "no request failed after h2 was marked down" test "${#errors[@]}" -eq 0
check "none of them reached h2" test "${served[h2]:-0}" -eq 0
check "h1 and h3 served them" test "$(( ${served[h1]:-0} + ${served[h3]:-0} ))" -eq "$requests"

# ---- 3. it comes back --------------------------------------------------------------------

step "start h2 again"
$cluster start-instance 2
check "HAProxy sees h2 UP" test "$($cluster haproxy-state 2)" == UP
reset_counts
for _ in $(seq 1 9); do round; done
show_counts
check "no request failed" test "${#errors[@]}" -eq 0
check "h2 serves again" test "${served[h2]:-0}" -ge 3

# ---- 4. a deploy: drain, stop, start, ready ----------------------------------------------

step "drain h3, stop it gracefully, start it, put it back"
$cluster drain-instance 3
reset_counts
for _ in $(seq 1 6); do round; done
show_counts
check "a drained host gets no new request" test "${served[h3]:-0}" -eq 0
$cluster stop-instance 3
$cluster start-instance 3
check "HAProxy keeps h3 drained after its restart until it is put back" test "$($cluster haproxy-state 3)" == DRAIN
$cluster ready-instance 3
reset_counts
for _ in $(seq 1 9); do round; done
show_counts
check "no request failed during the deploy" test "${#errors[@]}" -eq 0
check "h3 serves again" test "${served[h3]:-0}" -ge 3

# ---- 5. the Redis master of the line dies --------------------------------------------------

# `issue_in ROOM`: POST /queue/tokens into ROOM for a new user; sets STATUS and SERVED_BY.
issue_in() {
    local out
    out=$(curl -s --max-time 5 -o "$body" -w '%{http_code} %header{x-served-by}' -X POST "$CLUSTER_URL/queue/tokens" \
        -H 'Content-Type: application/json' \
        -d "{\"userId\":\"$(cat /proc/sys/kernel/random/uuid)\",\"roomId\":\"$1\"}") || out="000 -"
    read -r STATUS SERVED_BY <<<"$out"
    SERVED_BY=${SERVED_BY:--}
}

other=""
if [[ $CLUSTER_REDIS == cluster ]]; then
    step "a second room, whose line is on another Redis master than main's"
    main_master=$($cluster redis-master-of main)
    for i in $(seq 1 50); do
        if [[ $($cluster redis-master-of "other-$i") != "$main_master" ]]; then
            other=other-$i
            break
        fi
    done
    check "some room id hashes to another master than main's ($main_master)" test -n "$other"
    created=$(curl -s --max-time 5 -o "$body" -w '%{http_code}' -X POST "$CLUSTER_URL/admin/rooms" \
        -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
        -d "{\"id\":\"$other\",\"name\":\"Another on-sale\",\"concertIds\":[],\"admitBatch\":10,\"admitIntervalSecs\":10,\"activeTtlSecs\":600}") || true
    check "room $other created (master $($cluster redis-master-of "$other")): $created $(head -c 200 "$body")" test "$created" == 201
    # Every host learns of the room at its next scheduler check.
    joined=0
    for _ in $(seq 1 50); do
        issue_in "$other"
        if [[ $STATUS == 201 ]]; then joined=$((joined + 1)); else joined=0; fi
        ((joined < 6)) || break
        sleep 0.1
    done
    check "every host lets buyers into $other" test "$joined" -ge 6
    main_key=""
    for key in "{concert}:issued" "{concert:main}:issued"; do
        if [[ $(redis-cli -c -h "10.77.$CLUSTER_ID.1" -p "${CLUSTER_REDIS_PORTS%% *}" exists "$key") == 1 ]]; then main_key=$key; fi
    done
    check "main's line is on the Redis Cluster (${main_key:-no key})" test -n "$main_key"
fi

step "kill the Redis master of room main ($CLUSTER_REDIS), then bring it back"
redis_port=$($cluster kill-redis-master main)
if [[ $CLUSTER_REDIS == cluster ]]; then
    # The hook hit the master of main's line: its keys cannot be read until the failover.
    seed_port=$(for p in $CLUSTER_REDIS_PORTS; do [[ $p == "$redis_port" ]] || echo "$p"; done | head -1)
    out=$(redis-cli -c -h "10.77.$CLUSTER_ID.1" -p "$seed_port" get "$main_key" 2>&1) && ! grep -qiE 'error|could not|down' <<<"$out" &&
        fail "kill-redis-master main killed $redis_port, yet main's line still answers: $out"
    echo "ok: the master killed ($redis_port) held main's line"
fi
# Until Redis is back (single) or its replica took over (cluster), an issue into main answers
# 503 UNAVAILABLE from an instance: through the checked servers until HAProxy marks them down,
# then through the fail-open backups; never HAProxy's own bare 503 (no X-Served-By). Another
# room on another master notices nothing.
bare=0
unavailable=0
odd=()
other_failed=()
recovered_after=""
killed_at=$(date +%s%N)
while (($(date +%s%N) - killed_at < 4000000000)) || [[ $CLUSTER_REDIS == cluster && -z $recovered_after ]]; do
    issue
    if [[ $STATUS == 503 && $SERVED_BY == - ]]; then
        bare=$((bare + 1))
    elif [[ $STATUS == 503 ]] && grep -q '"code":"UNAVAILABLE"' "$body"; then
        unavailable=$((unavailable + 1))
    elif [[ $STATUS == 201 ]]; then
        [[ -n $recovered_after ]] || recovered_after=$((($(date +%s%N) - killed_at) / 1000000))
    else
        odd+=("$STATUS via $SERVED_BY: $(head -c 200 "$body")")
    fi
    if [[ -n $other ]]; then
        issue_in "$other"
        [[ $STATUS == 201 ]] || other_failed+=("$STATUS via $SERVED_BY: $(head -c 200 "$body")")
    fi
    (($(date +%s%N) - killed_at < 20000000000)) || fail "room main does not recover 20 s after its Redis master died"
    sleep 0.1
done
echo "   main: 503 UNAVAILABLE from an instance: $unavailable, bare 503 from HAProxy: $bare, other answers: ${#odd[@]}"
if ((${#odd[@]})); then printf '   %s\n' "${odd[@]:0:5}"; fi
check "every answer in main was 201 or the service's own 503 UNAVAILABLE" test "${#odd[@]}" -eq 0
check "HAProxy never answered a bare 503 (it fails open to the instances)" test "$bare" -eq 0
if [[ $CLUSTER_REDIS == cluster ]]; then
    echo "   main answered 201 again after ${recovered_after} ms, before its old master was restarted"
    check "main recovered within 10 s, with no restart (the replica took over)" test "$recovered_after" -le 10000
    if ((${#other_failed[@]})); then printf '   %s\n' "${other_failed[@]:0:5}"; fi
    check "room $other, on another master, answered 201 throughout" test "${#other_failed[@]}" -eq 0
else
    check "with its only Redis gone, the line answered 503" test "$unavailable" -ge 1
fi
$cluster restart-redis-node "$redis_port"
ready_again() { [[ $($cluster haproxy-state 1)$($cluster haproxy-state 2)$($cluster haproxy-state 3) == UPUPUP ]]; }
for _ in $(seq 1 50); do ready_again && break; sleep 0.2; done
check "every host is back in rotation once Redis is" ready_again
reset_counts
for _ in $(seq 1 6); do round; done
show_counts
check "no request failed after Redis came back" test "${#errors[@]}" -eq 0

# ---- 6. the store --------------------------------------------------------------------------

step "storage invariants"
check "concert check-invariants finds nothing" env -i PATH="$PATH" DATABASE_URL="$DATABASE_URL" "$CONCERT_BIN" check-invariants
if [[ $CLUSTER_REDIS == cluster ]]; then
    check "the Redis Cluster is whole" bash -c "redis-cli -h 10.77.$CLUSTER_ID.1 -p ${CLUSTER_REDIS_PORTS%% *} cluster info | grep -q '^cluster_state:ok'"
fi

# ---- teardown ------------------------------------------------------------------------------

step "tear down and check that nothing is left"
pids=$(cat "$CLUSTER_RUN"/h*.pid "$CLUSTER_RUN"/haproxy.pid "$CLUSTER_RUN"/redis/*/redis.pid 2>/dev/null | tr -dc '0-9\n')
pids+=$'\n'$(head -1 "$CLUSTER_RUN/pg/postmaster.pid" 2>/dev/null || true)
check "the pids of every process were recorded (3 instances, HAProxy, Redis, PostgreSQL)" \
    test "$(grep -c '[0-9]' <<<"$pids")" -ge 6
torn_down=1
$cluster down
check "no network namespace is left" bash -c "! ip netns list | grep -q '^concert$CLUSTER_ID-'"
check "no bridge or veth is left" bash -c "! ip -o link show | grep -qE ': cc$CLUSTER_ID-(br|h[0-9])'"
alive=""
for pid in $pids; do
    if kill -0 "$pid" 2>/dev/null && [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
        alive+="$pid($(cat "/proc/$pid/comm" 2>/dev/null)) "
    fi
done
check "no process of the cluster is left${alive:+: $alive}" test -z "$alive"
check "nothing listens on the cluster's ports" bash -c "! ss -Hltn | grep -qE '10\\.77\\.$CLUSTER_ID\\.1:|127\\.0\\.0\\.1:$((17080 + 100 * CLUSTER_ID)) '"
check "the state directory (database, Redis files, logs) is gone" test ! -e "$CLUSTER_RUN"
check "a second teardown is harmless" $cluster down

echo
echo "PASS: the reference deployment, in $(($(date +%s) - started)) s"
