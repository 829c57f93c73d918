#!/usr/bin/env bash
# A local Switchboard cluster of the real binary on loopback, for development and
# load tests. Each node gets its own data dir and ports; node 1 creates the cluster,
# the others join through it.
#
#   deploy/local-cluster.sh start [N]   start N nodes (default 3) and wait until ready
#   deploy/local-cluster.sh status      the cluster as node 1 (or the first live node) sees it
#   deploy/local-cluster.sh drain N     move every replica off node N
#   deploy/local-cluster.sh remove N    remove drained node N (then stop it: kill its pid)
#   deploy/local-cluster.sh stop        SIGTERM every node and wait for it to exit
#
# Environment:
#   SB_CLUSTER_DIR  where data dirs, logs and pids go (default ./cluster-data)
#   SB_BASE_PORT    node i uses BASE+10i (HTTP), +1 (TCP), +2 (QUIC, UDP), +3 (peer)
#                   (default 17000)
#   SB_BIN          the switchboard binary (default: build target/release/switchboard)
#   SB_NODE_ARGS    extra flags for every node, e.g. "--shards 16 --log warn"
# The admin token is in $SB_CLUSTER_DIR/admin-token (shared by all nodes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${SB_CLUSTER_DIR:-$PWD/cluster-data}"
BASE="${SB_BASE_PORT:-17000}"

port() { echo $((BASE + 10 * $1 + $2)); }
http_of() { echo "127.0.0.1:$(port "$1" 0)"; }
peer_of() { echo "127.0.0.1:$(port "$1" 3)"; }

binary() {
    if [ -n "${SB_BIN:-}" ]; then
        echo "$SB_BIN"
        return
    fi
    (source "$ROOT/scripts/env.sh" && cd "$ROOT" && cargo build --release -p switchboard-broker --bin switchboard >&2 && sb_save_rocksdb_cache >&2)
    echo "$ROOT/target/release/switchboard"
}

wait_ready() { # node, pid
    for _ in $(seq 1 1200); do
        if python3 - "$(http_of "$1")" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
urllib.request.urlopen(f"http://{sys.argv[1]}/readyz", timeout=1)
PY
        if ! kill -0 "$2" 2>/dev/null; then
            echo "node $1 exited; its log:" >&2
            tail -n 30 "$DIR/node-$1/node.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "node $1 not ready after 120 s" >&2
    return 1
}

start_node() { # node, seeds
    local n=$1 seeds=$2 bin=$3
    mkdir -p "$DIR/node-$n"
    local args=(--data-dir "$DIR/node-$n" --node-id "$n" --admin-token "$(cat "$DIR/admin-token")"
        --http-addr "$(http_of "$n")" --tcp-addr "127.0.0.1:$(port "$n" 1)"
        --quic-addr "127.0.0.1:$(port "$n" 2)" --peer-addr "$(peer_of "$n")")
    [ -n "$seeds" ] && args+=(--seeds "$seeds")
    # shellcheck disable=SC2086
    "$bin" "${args[@]}" ${SB_NODE_ARGS:-} >> "$DIR/node-$n/node.log" 2>&1 &
    echo $! > "$DIR/node-$n/pid"
}

cmd_start() {
    local count=${1:-3}
    local bin
    bin="$(binary)"
    mkdir -p "$DIR"
    [ -f "$DIR/admin-token" ] || python3 -c "import secrets; print(secrets.token_hex(24))" > "$DIR/admin-token"
    start_node 1 "" "$bin"
    wait_ready 1 "$(cat "$DIR/node-1/pid")"
    for n in $(seq 2 "$count"); do
        start_node "$n" "$(peer_of 1)" "$bin"
    done
    for n in $(seq 2 "$count"); do
        wait_ready "$n" "$(cat "$DIR/node-$n/pid")"
    done
    for n in $(seq 1 "$count"); do
        echo "node $n: pid $(cat "$DIR/node-$n/pid") http $(http_of "$n") tcp 127.0.0.1:$(port "$n" 1) quic 127.0.0.1:$(port "$n" 2) peer $(peer_of "$n")"
    done
    echo "admin token: $DIR/admin-token"
}

cmd_cluster() { # status|drain N|remove N [flags]: `switchboard cluster ...` against the first live node
    local bin
    bin="$(binary)"
    for f in "$DIR"/node-*/pid; do
        local n
        n="$(basename "$(dirname "$f")")"; n="${n#node-}"
        kill -0 "$(cat "$f")" 2>/dev/null || continue
        "$bin" cluster "$@" --url "http://$(http_of "$n")" --admin-token "$(cat "$DIR/admin-token")"
        return $?
    done
    echo "no node of $DIR is running" >&2
    return 1
}

cmd_stop() {
    local pids=()
    for f in "$DIR"/node-*/pid; do
        [ -f "$f" ] || continue
        local pid
        pid="$(cat "$f")"
        kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
        rm -f "$f"
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    echo "stopped ${#pids[@]} node(s)"
}

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    status|drain|remove) cmd_cluster "$@" ;;
    stop) cmd_stop ;;
    *) sed -n '2,21p' "$0"; exit 2 ;;
esac
