#!/usr/bin/env bash
# The reference deployment on one machine (docs/operations.md, "The reference deployment"):
# CLUSTER_HOSTS (3) instances of `concert serve`, each a host of its own in a network
# namespace, joined by a bridge; HAProxy in front with health checks on /health/ready; a
# PostgreSQL and a Redis Cluster (3 masters + 3 replicas) of the deployment's own, listening
# on the bridge's address. Nothing of the machine's own PostgreSQL or Redis is used or touched.
#
#   deploy/cluster.sh up                  bring it all up (fails, and removes what it made, if
#                                         any part does not come up)
#   deploy/cluster.sh down                remove every namespace, link, process, database and
#                                         file it made (idempotent)
#   deploy/cluster.sh status              the hosts, their health, HAProxy's view, Redis, PostgreSQL
#   deploy/cluster.sh env                 shell assignments for clients: CLUSTER_URL, ADMIN_TOKEN,
#                                         DATABASE_URL, REDIS_URL, ... (eval "$(deploy/cluster.sh env)")
# Hooks for load tests (each waits until the change has happened, and prints what it did):
#   kill-instance N [SIGNAL]              crash host N's instance (SIGKILL by default)
#   stop-instance N                       stop it gracefully (SIGTERM: in-flight requests finish)
#   start-instance [N]                    start it again (no N: every host that is down) and
#                                         wait until it is ready and HAProxy routes to it
#   drain-instance N / ready-instance N   take it out of HAProxy's rotation / put it back
#   kill-redis-master [ROOM]              SIGKILL the Redis master serving ROOM's hash slot
#                                         (default: room "main"); prints its port
#   redis-master-of [ROOM]                the port of the Redis master serving ROOM's line
#   restart-redis-node [PORT]             (re)start one Redis node (no PORT: every node that is
#                                         down); it rejoins the cluster, as a replica after a
#                                         failover
#
# Settings (environment):
#   CLUSTER_ID     0..99 (0): picks the subnet 10.77.<ID>.0/24, ports 17000+100*ID+..., the
#                  names concert<ID>-h<N> / cc<ID>-*, so two deployments can run side by side
#   CLUSTER_HOSTS  1..9 (3)
#   CLUSTER_REDIS  cluster | single | auto (auto): cluster gives REDIS_URL as the list of the
#                  six nodes; single runs one Redis instead, for a binary whose REDIS_URL takes
#                  one URL; auto tries the cluster and falls back to single when the binary
#                  refuses the list (it exits at start, naming REDIS_URL)
#   CLUSTER_RUN    state directory (/tmp/concert-cluster-<ID>)
#   CLUSTER_PORT   HAProxy's port on 127.0.0.1 (17080+100*ID); its stats page is on the next
#   CONCERT_BIN    the binary (target/release/concert)
#   CLUSTER_EXTRA_ENV  a file of KEY=value lines added to every host's environment
#   CLUSTER_READY_SECS how long an instance may take to become ready (60)
# Needs root (network namespaces), ip, haproxy, redis-server, redis-cli, curl, PostgreSQL's
# server binaries (initdb, pg_ctl), runuser, and socat or python3 for HAProxy's runtime API.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

ID=${CLUSTER_ID:-0}
[[ $ID =~ ^[0-9]{1,2}$ ]] || { echo "CLUSTER_ID must be 0..99, not '$ID'" >&2; exit 2; }
ID=$((10#$ID))
HOSTS=${CLUSTER_HOSTS:-3}
[[ $HOSTS =~ ^[1-9]$ ]] || { echo "CLUSTER_HOSTS must be 1..9, not '$HOSTS'" >&2; exit 2; }
RUN=${CLUSTER_RUN:-/tmp/concert-cluster-$ID}
BIN=${CONCERT_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/concert}
[[ $BIN == /* ]] || BIN=$PWD/$BIN

NET=10.77.$ID
BRIDGE_ADDR=$NET.1
BRIDGE=cc$ID-br
BASE=$((17000 + 100 * ID))
REDIS_PORTS=($((BASE + 1)) $((BASE + 2)) $((BASE + 3)) $((BASE + 4)) $((BASE + 5)) $((BASE + 6)))
REDIS_SINGLE_PORT=$((BASE + 7))
PG_PORT=$((BASE + 32))
FRONT_ADDR=127.0.0.1
FRONT_PORT=${CLUSTER_PORT:-$((BASE + 80))}
STATS_PORT=$((FRONT_PORT + 1))
APP_PORT=8080
KEY_PREFIX=concert
PG_USER=postgres

ns_of() { echo "concert$ID-h$1"; }
veth_of() { echo "cc$ID-h$1"; }
addr_of() { echo "$NET.$((10 + $1))"; }

# Messages go to stderr: stdout is for what a caller reads (env, the killed Redis port).
say() { printf '[cluster %s] %s\n' "$ID" "$*" >&2; }
die() {
    printf '[cluster %s] error: %s\n' "$ID" "$*" >&2
    exit 1
}

# ---- state ------------------------------------------------------------------------------

# What `up` decided, for the other commands (the Redis mode, the binary, the hosts).
state_file() { echo "$RUN/cluster.state"; }
load_state() {
    [[ -f $(state_file) ]] || die "no cluster $ID is up (no $(state_file)); run: deploy/cluster.sh up"
    # shellcheck disable=SC1090
    source "$(state_file)"
}

pg_bin() {
    if [[ -n ${PG_BIN:-} ]]; then
        echo "$PG_BIN"
    elif [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then
        echo /usr/lib/postgresql/15/bin
    else
        local d
        d=$(printf '%s\n' /usr/lib/postgresql/*/bin | grep -v '\*' | sort -V | tail -1 || true)
        [[ -n $d ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (set PG_BIN)"
        echo "$d"
    fi
}

database_url() { echo "postgres://$PG_USER@$BRIDGE_ADDR:$PG_PORT/concert"; }

redis_url() {
    if [[ $1 == cluster ]]; then
        local p urls=()
        for p in "${REDIS_PORTS[@]}"; do urls+=("redis://$BRIDGE_ADDR:$p"); done
        (IFS=,; echo "${urls[*]}")
    else
        echo "redis://$BRIDGE_ADDR:$REDIS_SINGLE_PORT"
    fi
}

alive() { [[ -n ${1:-} ]] && ! gone "$1"; }
# Gone: no such process, or a zombie that its new parent has not reaped yet.
gone() { ! kill -0 "$1" 2>/dev/null || [[ $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) == Z ]]; }

pid_in() { if [[ -s $1 ]]; then tr -dc '0-9' <"$1"; fi; }

# Waits up to $1 seconds for the command to succeed.
wait_for() {
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# ---- HAProxy's runtime API ----------------------------------------------------------------

haproxy_cmd() {
    local sock=$RUN/haproxy.sock
    [[ -S $sock ]] || return 1
    if command -v socat >/dev/null 2>&1; then
        printf '%s\n' "$1" | socat -t 2 - "UNIX-CONNECT:$sock"
    else
        python3 - "$sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
out = b""
while chunk := s.recv(65536):
    out += chunk
sys.stdout.write(out.decode())
PY
    fi
}

# "h1 UP", "h2 DOWN", ... for the backend's checked servers.
haproxy_servers() {
    haproxy_cmd "show stat" | awk -F, '$1 == "concert" && $2 ~ /^h[0-9]+$/ { print $2, $18 }'
}

# Every host UP by a check that passed (HAProxy starts its servers UP before checking them).
haproxy_all_up() {
    [[ $(haproxy_cmd "show stat" | awk -F, '$1 == "concert" && $2 ~ /^h[0-9]+$/ && $18 == "UP" && $37 == "L7OK" { n++ }
        END { print n + 0 }') == "$HOSTS" ]]
}

haproxy_state_of() { haproxy_servers | awk -v s="h$1" '$1 == s { print $2 }'; }

# ---- rendering ----------------------------------------------------------------------------

# Replaces each {{NAME}} given as NAME=value after the template (values are used literally).
render() {
    local template=$1 text kv
    shift
    text=$(<"$template")
    for kv in "$@"; do
        local name=${kv%%=*} value=${kv#*=}
        text=${text//"{{$name}}"/"$value"}
    done
    if [[ $text =~ \{\{[A-Z_]+\}\} ]]; then
        die "$template: ${BASH_REMATCH[0]} left unrendered"
    fi
    printf '%s\n' "$text"
}

# ---- instances ----------------------------------------------------------------------------

check_host() {
    if ! [[ $1 =~ ^[1-9]$ ]] || ((10#$1 > HOSTS)); then die "no host '$1' (hosts are 1..$HOSTS)"; fi
}

instance_pid() { pid_in "$RUN/h$1.pid"; }

instance_ready() { curl -sf -o /dev/null --max-time 2 "http://$(addr_of "$1"):$APP_PORT/health/ready"; }

# Starts host N's instance and waits until it is ready: 0 ready, 2 it exited first, 1 not
# ready in time. Says nothing: start_instance and up tell what it means.
launch_instance() {
    local n=$1 ns envfile pidfile vars=() i
    ns=$(ns_of "$n")
    envfile=$RUN/hosts/h$n.env
    pidfile=$RUN/h$n.pid
    rm -f "$pidfile"
    mapfile -t vars < <(grep -Ev '^[[:space:]]*(#|$)' "$envfile")
    # Exactly the host's environment (as systemd's EnvironmentFile= gives it), in a session of
    # its own so that a terminal's Ctrl-C does not reach it; the wrapper records the pid
    # `exec` keeps.
    # shellcheck disable=SC2016 # $$ is the inner shell's
    ip netns exec "$ns" setsid env -i PATH=/usr/local/bin:/usr/bin:/bin "${vars[@]}" \
        bash -c 'echo $$ >"$1"; exec "$2" serve' _ "$pidfile" "$BIN" \
        >>"$RUN/logs/h$n.log" 2>&1 </dev/null &
    wait_for 5 test -s "$pidfile" || return 2
    for ((i = 0; ; i++)); do
        instance_ready "$n" && return 0
        alive "$(instance_pid "$n")" || return 2
        ((i < ${CLUSTER_READY_SECS:-60} * 5)) || return 1
        sleep 0.2
    done
}

launch_failed() {
    tail -n 3 "$RUN/logs/h$1.log" >&2 || true
    (($2 == 2)) && die "h$1 exited before it was ready (log: $RUN/logs/h$1.log)"
    die "h$1 is not ready after ${CLUSTER_READY_SECS:-60} s (log: $RUN/logs/h$1.log)"
}

start_instance() {
    local n=$1 rc=0
    check_host "$n"
    if alive "$(instance_pid "$n")"; then
        say "h$n is already running (pid $(instance_pid "$n"))"
        return 0
    fi
    launch_instance "$n" || rc=$?
    ((rc == 0)) || launch_failed "$n" "$rc"
    # Back in rotation once HAProxy's checks pass (rise 2 x 1 s); DRAIN if an operator drained it.
    if [[ -S $RUN/haproxy.sock ]]; then
        wait_for 15 haproxy_sees_up "$n" || die "HAProxy does not see h$n up 15 s after it became ready"
    fi
    say "h$n ready at $(addr_of "$n"):$APP_PORT (pid $(instance_pid "$n"), namespace $(ns_of "$n"))"
}

haproxy_sees_up() { [[ $(haproxy_state_of "$1") =~ ^(UP|DRAIN)$ ]]; }

kill_instance() {
    local n=$1 sig=${2:-KILL} pid ns
    check_host "$n"
    pid=$(instance_pid "$n")
    ns=$(ns_of "$n")
    if ! alive "$pid"; then
        say "h$n is not running"
        return 0
    fi
    # A pid is only ours while it still runs in the host's namespace.
    [[ $(ip netns identify "$pid" 2>/dev/null) == "$ns" ]] || die "pid $pid is not in $ns; not killing it"
    kill -s "$sig" "$pid"
    # SIGTERM drains for up to 30 s.
    wait_for 40 gone "$pid" || die "h$n (pid $pid) still runs 40 s after SIG$sig"
    rm -f "$RUN/h$n.pid"
    say "h$n stopped by SIG$sig (pid $pid)"
}

set_server_state() {
    local n=$1 state=$2
    check_host "$n"
    haproxy_cmd "set server concert/h$n state $state" >/dev/null || die "HAProxy's runtime API does not answer"
    say "h$n set to $state in HAProxy"
}

# ---- Redis --------------------------------------------------------------------------------

redis_node_dir() { echo "$RUN/redis/$1"; }

start_redis_node() {
    local port=$1 dir
    dir=$(redis_node_dir "$port")
    [[ -f $dir/redis.conf ]] || die "no Redis node on port $port in this cluster"
    redis-server "$dir/redis.conf"
    wait_for 10 redis-cli -h "$BRIDGE_ADDR" -p "$port" ping || die "Redis on port $port did not start (see $dir/redis.log)"
}

make_redis_node() {
    local port=$1 cluster=$2 dir
    dir=$(redis_node_dir "$port")
    mkdir -p "$dir"
    render "$here/redis/node.conf.template" ADDR="$BRIDGE_ADDR" PORT="$port" DIR="$dir" CLUSTER="$cluster" \
        >"$dir/redis.conf"
    start_redis_node "$port"
}

# Every given node sees the cluster whole: each of the 16384 slots served, and every node it
# knows linked and not suspected of failing (cluster_state alone stays ok while slots lack a
# master, with cluster-require-full-coverage no, and until a failure is detected).
cluster_ok() {
    local p info
    for p in "$@"; do
        info=$(redis-cli -h "$BRIDGE_ADDR" -p "$p" cluster info 2>/dev/null | tr -d '\r') || return 1
        grep -q '^cluster_state:ok$' <<<"$info" || return 1
        grep -q '^cluster_slots_ok:16384$' <<<"$info" || return 1
        redis-cli -h "$BRIDGE_ADDR" -p "$p" cluster nodes 2>/dev/null |
            awk '$3 ~ /fail|handshake|noaddr/ || $8 != "connected" { bad = 1 } END { exit bad }' || return 1
    done
}

# Every replica among the given nodes has finished its sync and follows its master: until
# then a failover would lose what its master had written.
replicas_synced() {
    local p info
    for p in "$@"; do
        info=$(redis-cli -h "$BRIDGE_ADDR" -p "$p" info replication 2>/dev/null | tr -d '\r') || return 1
        grep -q '^role:slave$' <<<"$info" || continue
        grep -q '^master_link_status:up$' <<<"$info" || return 1
        grep -q '^master_sync_in_progress:0$' <<<"$info" || return 1
    done
}

any_redis_node() {
    local p
    for p in "${REDIS_PORTS[@]}"; do
        if redis-cli -h "$BRIDGE_ADDR" -p "$p" ping >/dev/null 2>&1; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# The hash tag of ROOM's keys: `{<prefix>:<room>}` (docs/api.md, "Queue on a Redis Cluster");
# `main`'s line kept the namespace it had before rooms, `{<prefix>}`. Whichever holds the
# line's counter (`<tag>:issued`) wins, so this follows the store as it is.
room_tag() {
    local room=$1
    local seed tag candidates=("{$KEY_PREFIX:$room}")
    [[ $room == main ]] && candidates=("{$KEY_PREFIX}" "{$KEY_PREFIX:main}")
    seed=$(any_redis_node) || die "no Redis node answers"
    for tag in "${candidates[@]}"; do
        if [[ $(redis-cli -c -h "$BRIDGE_ADDR" -p "$seed" exists "$tag:issued" 2>/dev/null) == 1 ]]; then
            echo "$tag"
            return 0
        fi
    done
    echo "${candidates[0]}"
}

# The port of the master that serves the hash slot of ROOM's keys.
master_of_room() {
    local room=$1 seed slot
    seed=$(any_redis_node) || die "no Redis node answers"
    slot=$(redis-cli -h "$BRIDGE_ADDR" -p "$seed" cluster keyslot "$(room_tag "$room")")
    redis-cli -h "$BRIDGE_ADDR" -p "$seed" cluster nodes | awk -v slot="$slot" '
        $3 ~ /master/ && $3 !~ /fail/ && $8 == "connected" {
            for (i = 9; i <= NF; i++) {
                n = split($i, r, "-")
                lo = r[1]; hi = (n == 2 ? r[2] : r[1])
                if (lo ~ /^[0-9]+$/ && slot + 0 >= lo + 0 && slot + 0 <= hi + 0) {
                    split($2, a, "[:@]"); print a[2]; exit
                }
            }
        }'
}

kill_redis_master() {
    local room=${1:-main} port pid
    load_state
    if [[ $REDIS_MODE == single ]]; then
        port=$REDIS_SINGLE_PORT
    else
        port=$(master_of_room "$room")
        [[ -n $port ]] || die "no master serves room $room's slot right now"
    fi
    pid=$(pid_in "$(redis_node_dir "$port")/redis.pid")
    alive "$pid" || die "the Redis node on port $port is not running"
    kill -KILL "$pid"
    wait_for 5 gone "$pid" || die "Redis pid $pid survived SIGKILL"
    say "killed the Redis master on port $port (room $room, pid $pid)"
    echo "$port"
}

restart_redis_node() {
    local port=${1:-} pid p dir
    load_state
    if [[ -z $port ]]; then
        # Every node that is not running: what a load test's chaos step calls to undo an
        # earlier kill-redis-master without knowing the port it printed.
        for dir in "$RUN"/redis/*/; do
            p=$(basename "$dir")
            alive "$(pid_in "$dir/redis.pid")" || restart_redis_node "$p"
        done
        return 0
    fi
    [[ $port =~ ^[0-9]+$ ]] || die "usage: deploy/cluster.sh restart-redis-node [PORT]"
    pid=$(pid_in "$(redis_node_dir "$port")/redis.pid")
    if alive "$pid"; then
        kill -KILL "$pid"
        wait_for 5 gone "$pid" || die "Redis pid $pid survived SIGKILL"
    fi
    start_redis_node "$port"
    if [[ $REDIS_MODE == cluster ]]; then
        wait_for 30 cluster_ok "${REDIS_PORTS[@]}" || die "the Redis Cluster is not ok 30 s after restarting $port"
        wait_for 30 replicas_synced "${REDIS_PORTS[@]}" || die "the replicas have not synced 30 s after restarting $port"
    fi
    say "Redis node on port $port running again ($(redis-cli -h "$BRIDGE_ADDR" -p "$port" role | head -1))"
}

# ---- up -----------------------------------------------------------------------------------

preflight() {
    local tool port
    ((EUID == 0)) || die "needs root: network namespaces, veth pairs and a bridge are made with ip(8)"
    for tool in ip ss haproxy redis-server redis-cli curl runuser setsid; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (Debian: apt-get install iproute2 haproxy redis-server curl util-linux)"
    done
    command -v socat >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 || die "needs socat or python3 for HAProxy's runtime API"
    [[ -x $BIN ]] || die "no binary at $BIN (make build, or set CONCERT_BIN)"
    id -u "$PG_USER" >/dev/null 2>&1 || die "no '$PG_USER' system user to run PostgreSQL as (install postgresql)"
    [[ -x $(pg_bin)/initdb ]] || die "no initdb in $(pg_bin)"
    if [[ -e $RUN ]]; then
        die "$RUN exists: cluster $ID is up or was left over; run deploy/cluster.sh down first"
    fi
    if ip netns list | grep -q "^concert$ID-" || ip link show "$BRIDGE" >/dev/null 2>&1; then
        die "namespaces or links of cluster $ID exist; run deploy/cluster.sh down first"
    fi
    if ip -4 -o addr show | grep -qF " $NET."; then
        die "an interface already has an address in $NET.0/24; pick another CLUSTER_ID"
    fi
    for port in "${REDIS_PORTS[@]}" "$REDIS_SINGLE_PORT" "$PG_PORT" "$FRONT_PORT" "$STATS_PORT"; do
        if ! port_free "$port" || ! port_free $((port + 10000)); then
            die "port $port or $((port + 10000)) is taken; pick another CLUSTER_ID"
        fi
    done
}

make_network() {
    local n ns veth
    ip link add "$BRIDGE" type bridge
    ip addr add "$BRIDGE_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for ((n = 1; n <= HOSTS; n++)); do
        ns=$(ns_of "$n")
        veth=$(veth_of "$n")
        ip netns add "$ns"
        ip link add "$veth" type veth peer name eth0 netns "$ns"
        ip link set "$veth" master "$BRIDGE" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$(addr_of "$n")/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add default via "$BRIDGE_ADDR"
    done
    say "network: bridge $BRIDGE $BRIDGE_ADDR/24, hosts $(for ((n = 1; n <= HOSTS; n++)); do printf '%s=%s ' "$(ns_of "$n")" "$(addr_of "$n")"; done)"
}

make_postgres() {
    local bin data=$RUN/pg sock=$RUN/pg-sock
    bin=$(pg_bin)
    mkdir -p "$data" "$sock"
    touch "$RUN/logs/postgres.log"
    chown "$PG_USER" "$data" "$sock" "$RUN/logs/postgres.log"
    chmod 700 "$data"
    (cd / && runuser -u "$PG_USER" -- "$bin/initdb" -D "$data" -U "$PG_USER" --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$RUN/logs/initdb.log" 2>&1) || die "initdb failed (see $RUN/logs/initdb.log)"
    # The hosts connect from the bridge's subnet. trust: a private network of one machine;
    # a production database wants scram-sha-256 and TLS.
    echo "host all all $NET.0/24 trust" >>"$data/pg_hba.conf"
    (cd / && runuser -u "$PG_USER" -- "$bin/pg_ctl" -D "$data" -l "$RUN/logs/postgres.log" -w -t 30 \
        -o "-c listen_addresses=$BRIDGE_ADDR -c port=$PG_PORT -c unix_socket_directories=$sock -c max_connections=200 -c shared_buffers=256MB -c jit=off" \
        start >/dev/null) || die "PostgreSQL did not start (see $RUN/logs/postgres.log)"
    say "PostgreSQL at $BRIDGE_ADDR:$PG_PORT (data $data)"
}

make_redis() {
    local mode=$1 p addrs=()
    if [[ $mode == single ]]; then
        make_redis_node "$REDIS_SINGLE_PORT" no
        say "Redis (single) at $BRIDGE_ADDR:$REDIS_SINGLE_PORT"
        return 0
    fi
    for p in "${REDIS_PORTS[@]}"; do
        make_redis_node "$p" yes
        addrs+=("$BRIDGE_ADDR:$p")
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$RUN/logs/redis-cluster-create.log" 2>&1 ||
        die "redis-cli --cluster create failed (see $RUN/logs/redis-cluster-create.log)"
    wait_for 30 cluster_ok "${REDIS_PORTS[@]}" || die "the Redis Cluster is not ok after 30 s"
    wait_for 30 replicas_synced "${REDIS_PORTS[@]}" || die "the Redis Cluster's replicas have not synced after 30 s"
    say "Redis Cluster: masters and replicas on $BRIDGE_ADDR:${REDIS_PORTS[0]}-${REDIS_PORTS[5]}"
}

make_hosts() {
    local mode=$1 n extra=""
    if [[ -n ${CLUSTER_EXTRA_ENV:-} ]]; then
        [[ -r $CLUSTER_EXTRA_ENV ]] || die "CLUSTER_EXTRA_ENV=$CLUSTER_EXTRA_ENV cannot be read"
        extra=$(<"$CLUSTER_EXTRA_ENV")
    fi
    for ((n = 1; n <= HOSTS; n++)); do
        render "$here/hosts/host.env.template" HOST_ADDR="$(addr_of "$n")" DATABASE_URL="$(database_url)" \
            REDIS_URL="$(redis_url "$mode")" ADMIN_TOKEN="$(<"$RUN/admin-token")" PROXY_CIDR="$BRIDGE_ADDR/32" \
            EXTRA="$extra" >"$RUN/hosts/h$n.env"
        chmod 600 "$RUN/hosts/h$n.env"
    done
}

make_haproxy() {
    local n servers="" open="" pid limit maxconn
    for ((n = 1; n <= HOSTS; n++)); do
        servers+="    server h$n $(addr_of "$n"):$APP_PORT check"$'\n'
        open+="    server h$n-open $(addr_of "$n"):$APP_PORT backup"$'\n'
    done
    limit=$(ulimit -Hn)
    [[ $limit == unlimited ]] && limit=1048576
    maxconn=$(((limit - 200) / 2))
    ((maxconn > 50000)) && maxconn=50000
    render "$here/haproxy/haproxy.cfg.template" RUN="$RUN" FRONT_ADDR="$FRONT_ADDR" FRONT_PORT="$FRONT_PORT" \
        STATS_PORT="$STATS_PORT" MAXCONN="$maxconn" SERVERS="${servers%$'\n'}" OPEN_SERVERS="${open%$'\n'}" \
        >"$RUN/haproxy.cfg"
    haproxy -c -q -f "$RUN/haproxy.cfg" || die "HAProxy rejects $RUN/haproxy.cfg"
    setsid haproxy -f "$RUN/haproxy.cfg" >>"$RUN/logs/haproxy.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$RUN/haproxy.pid"
    wait_for 10 test -S "$RUN/haproxy.sock" || die "HAProxy did not start (see $RUN/logs/haproxy.log)"
    wait_for 15 haproxy_all_up ||
        die "HAProxy does not see every host UP: $(haproxy_servers | tr '\n' ' ')"
    say "HAProxy at http://$FRONT_ADDR:$FRONT_PORT (stats http://$FRONT_ADDR:$STATS_PORT/, pid $pid)"
}

# After a failed `up`: keep the logs for a look (the next `down` removes them), remove the rest.
up_failed() {
    rm -rf "$RUN.failed-logs"
    cp -a "$RUN/logs" "$RUN.failed-logs" 2>/dev/null || true
    say "up failed; removing what was made (its logs are kept in $RUN.failed-logs)"
    down keep-logs || true
}

up_exit() {
    local rc=$?
    ((UP_OK == 1)) || up_failed
    exit "$rc"
}

write_state() {
    printf 'REDIS_MODE=%q\nBIN=%q\nHOSTS=%q\nFRONT_PORT=%q\nSTATS_PORT=%q\n' \
        "$1" "$BIN" "$HOSTS" "$FRONT_PORT" "$STATS_PORT" >"$(state_file)"
}

# CLUSTER_REDIS=auto with a binary whose REDIS_URL takes one URL: it refused the cluster's node
# list (it exits at start, naming REDIS_URL). The hosts then use one Redis, and the Redis
# Cluster goes, so that what runs is what is used.
fall_back_to_single() {
    local p n
    for p in "${REDIS_PORTS[@]}"; do
        end_process "$(pid_in "$(redis_node_dir "$p")/redis.pid")" 5
        rm -rf "$(redis_node_dir "$p")"
    done
    say "CLUSTER_REDIS=auto: $BIN refused the Redis Cluster's node list as REDIS_URL ($(grep -o 'REDIS_URL[^"]*' "$RUN/logs/h1.log" | tail -1)); the hosts use one Redis instead"
    write_state single
    make_redis single
    make_hosts single
    for ((n = 1; n <= HOSTS; n++)); do rm -f "$RUN/logs/h$n.log"; done
}

up() {
    local mode=${CLUSTER_REDIS:-auto} n rc first
    preflight
    [[ $mode =~ ^(cluster|single|auto)$ ]] || die "CLUSTER_REDIS must be cluster, single or auto, not '$mode'"
    mkdir -p "$RUN"/{logs,hosts,redis}
    chmod 755 "$RUN"
    # From here on, a failure removes everything made so far.
    UP_OK=0
    trap up_exit EXIT
    trap 'exit 130' INT TERM
    write_state "$mode"
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$RUN/admin-token"
    chmod 600 "$RUN/admin-token"

    make_network
    make_postgres
    if [[ $mode == single ]]; then make_redis single; else make_redis cluster; fi
    env -i PATH="$PATH" DATABASE_URL="$(database_url)" "$BIN" migrate >>"$RUN/logs/migrate.log" 2>&1 ||
        die "concert migrate failed (see $RUN/logs/migrate.log)"
    env -i PATH="$PATH" DATABASE_URL="$(database_url)" "$BIN" seed-demo >>"$RUN/logs/migrate.log" 2>&1 ||
        die "concert seed-demo failed (see $RUN/logs/migrate.log)"
    say "database migrated and seeded with the demo catalogue"
    first=1
    if [[ $mode == auto ]]; then
        mode=cluster
        write_state cluster
        make_hosts cluster
        rc=0
        launch_instance 1 || rc=$?
        if ((rc == 2)) && grep -q 'REDIS_URL' "$RUN/logs/h1.log"; then
            mode=single
            fall_back_to_single
        elif ((rc != 0)); then
            launch_failed 1 "$rc"
        else
            say "h1 ready at $(addr_of 1):$APP_PORT (pid $(instance_pid 1), namespace $(ns_of 1))"
            first=2
        fi
    else
        make_hosts "$mode"
    fi
    for ((n = first; n <= HOSTS; n++)); do start_instance "$n"; done
    make_haproxy
    UP_OK=1
    trap - EXIT INT TERM
    local id_prefix=""
    ((ID == 0)) || id_prefix="CLUSTER_ID=$ID "
    say "up: $HOSTS hosts behind http://$FRONT_ADDR:$FRONT_PORT, Redis $mode; clients: eval \"\$(${id_prefix}deploy/cluster.sh env)\""
}

# ---- down ---------------------------------------------------------------------------------

# Ends a process we started: SIGTERM, then SIGKILL after $2 seconds.
end_process() {
    local pid=$1 grace=${2:-5}
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait_for "$grace" gone "$pid" && return 0
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 5 gone "$pid" || echo "[cluster $ID] pid $pid survives SIGKILL" >&2
}

down() {
    local ns pid pids p d data=$RUN/pg
    # The ports `up` was given, if it left its state.
    if [[ -f $(state_file) ]]; then
        # shellcheck disable=SC1090
        source "$(state_file)"
    fi
    # Instances: every process in our namespaces (those and only those are ours).
    for ns in $(ip netns list 2>/dev/null | awk -v pre="concert$ID-h" 'index($1, pre) == 1 { print $1 }'); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
        for pid in $pids; do end_process "$pid" 5; done
    done
    # HAProxy, Redis, PostgreSQL, by the pids they recorded.
    end_process "$(pid_in "$RUN/haproxy.pid")" 5
    for d in "$RUN"/redis/*/; do
        [[ -d $d ]] && end_process "$(pid_in "$d/redis.pid")" 5
    done
    if [[ -s $data/postmaster.pid ]]; then
        (cd / && runuser -u "$PG_USER" -- "$(pg_bin)/pg_ctl" -D "$data" -m immediate -w -t 10 stop >/dev/null 2>&1) || true
        end_process "$(head -1 "$data/postmaster.pid" 2>/dev/null | tr -dc '0-9')" 2
    fi
    # Anything still listening on the bridge's address, or on our HAProxy ports, is ours too
    # (the address exists only for this cluster): a state directory removed by hand leaves
    # no process behind.
    pids=$(
        {
            ss -Hltnp "src $BRIDGE_ADDR" 2>/dev/null
            ss -Hltnp "src $FRONT_ADDR and ( sport = :$FRONT_PORT or sport = :$STATS_PORT )" 2>/dev/null | grep '"haproxy"'
        } | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true
    )
    for p in $pids; do end_process "$p" 2; done
    # Namespaces (their end of each veth pair goes with them), the root ends, the bridge.
    for ns in $(ip netns list 2>/dev/null | awk -v pre="concert$ID-h" 'index($1, pre) == 1 { print $1 }'); do
        ip netns del "$ns" 2>/dev/null || true
    done
    for d in $(ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1 | grep -E "^cc$ID-(h[0-9]+|br)$" || true); do
        ip link del "$d" 2>/dev/null || true
    done
    rm -rf "$RUN"
    [[ ${1:-} == keep-logs ]] || rm -rf "$RUN.failed-logs"
    say "down: no namespace, link, process or file of cluster $ID left${1:+ (but the logs of the failed up)}"
}

# ---- status and env -----------------------------------------------------------------------

status() {
    local n pid live ready mode
    if [[ ! -f $(state_file) ]]; then
        say "not up ($RUN does not exist)"
        return 0
    fi
    load_state
    mode=$REDIS_MODE
    echo "hosts (namespace, address, pid, /health/live, /health/ready):"
    for ((n = 1; n <= HOSTS; n++)); do
        pid=$(instance_pid "$n")
        alive "$pid" || pid="-"
        live=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$(addr_of "$n"):$APP_PORT/health/live" || true)
        ready=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$(addr_of "$n"):$APP_PORT/health/ready" || true)
        printf '  h%s  %-13s %-15s pid %-8s live %s  ready %s\n' "$n" "$(ns_of "$n")" "$(addr_of "$n"):$APP_PORT" "$pid" "$live" "$ready"
    done
    echo "HAProxy http://$FRONT_ADDR:$FRONT_PORT (server, status, last check, current/total sessions):"
    if ! haproxy_cmd "show stat" | awk -F, '$1 == "concert" && $2 != "FRONTEND" && $2 != "BACKEND" {
            printf "  %-8s %-6s %-14s %s/%s\n", $2, $18, $37, $5, $8 }'; then
        echo "  HAProxy's runtime API does not answer"
    fi
    echo "Redis ($mode):"
    if [[ $mode == cluster ]]; then
        p=$(any_redis_node) || { echo "  no node answers"; p=""; }
        if [[ -n $p ]]; then
            redis-cli -h "$BRIDGE_ADDR" -p "$p" cluster info | grep -E '^cluster_(state|known_nodes|size)' | sed 's/^/  /'
            redis-cli -h "$BRIDGE_ADDR" -p "$p" cluster nodes |
                awk '{ split($2, a, "[:@]"); printf "  %-6s %-24s %s %s\n", a[2], $3, $8, $9 ($10 ? " " $10 : "") }' | sort
        fi
    else
        printf '  %s:%s %s\n' "$BRIDGE_ADDR" "$REDIS_SINGLE_PORT" "$(redis-cli -h "$BRIDGE_ADDR" -p "$REDIS_SINGLE_PORT" ping 2>&1 || true)"
    fi
    printf 'PostgreSQL %s:%s: ' "$BRIDGE_ADDR" "$PG_PORT"
    "$(pg_bin)/pg_isready" -h "$BRIDGE_ADDR" -p "$PG_PORT" | sed 's/^[^ ]* - //' || true
}

print_env() {
    load_state
    printf 'CLUSTER_URL=%q\n' "http://$FRONT_ADDR:$FRONT_PORT"
    printf 'CLUSTER_STATS_URL=%q\n' "http://$FRONT_ADDR:$STATS_PORT/"
    printf 'ADMIN_TOKEN=%q\n' "$(<"$RUN/admin-token")"
    printf 'DATABASE_URL=%q\n' "$(database_url)"
    printf 'REDIS_URL=%q\n' "$(redis_url "$REDIS_MODE")"
    printf 'REDIS_KEY_PREFIX=%q\n' "$KEY_PREFIX"
    printf 'CLUSTER_REDIS=%q\n' "$REDIS_MODE"
    printf 'CLUSTER_HOSTS=%q\n' "$HOSTS"
    printf 'CLUSTER_HOST_URLS=%q\n' "$(for ((n = 1; n <= HOSTS; n++)); do printf 'http://%s:%s ' "$(addr_of "$n")" "$APP_PORT"; done | sed 's/ $//')"
    if [[ $REDIS_MODE == cluster ]]; then
        printf 'CLUSTER_REDIS_PORTS=%q\n' "${REDIS_PORTS[*]}"
    else
        printf 'CLUSTER_REDIS_PORTS=%q\n' "$REDIS_SINGLE_PORT"
    fi
}

# ---- main ---------------------------------------------------------------------------------

main() {
    local cmd=${1:-} n
    shift || true
    case $cmd in
        up) up ;;
        down) down ;;
        status) status ;;
        env) print_env ;;
        kill-instance)
            load_state
            kill_instance "${1:?usage: kill-instance N [SIGNAL]}" "${2:-KILL}"
            ;;
        stop-instance)
            load_state
            kill_instance "${1:?usage: stop-instance N}" TERM
            ;;
        start-instance)
            load_state
            if [[ -n ${1:-} ]]; then
                start_instance "$1"
            else
                for ((n = 1; n <= HOSTS; n++)); do
                    alive "$(instance_pid "$n")" || start_instance "$n"
                done
            fi
            ;;
        drain-instance)
            load_state
            set_server_state "${1:?usage: drain-instance N}" drain
            ;;
        ready-instance)
            load_state
            set_server_state "${1:?usage: ready-instance N}" ready
            ;;
        kill-redis-master) kill_redis_master "${1:-main}" ;;
        redis-master-of)
            load_state
            if [[ $REDIS_MODE == single ]]; then echo "$REDIS_SINGLE_PORT"; else master_of_room "${1:-main}"; fi
            ;;
        restart-redis-node) restart_redis_node "${1:-}" ;;
        haproxy-state)
            load_state
            haproxy_state_of "${1:?usage: haproxy-state N}"
            ;;
        *)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            [[ -z $cmd || $cmd == help || $cmd == -h || $cmd == --help ]] || exit 2
            ;;
    esac
}

# Sourced (by a test), it only defines the functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
