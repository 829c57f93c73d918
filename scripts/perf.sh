#!/usr/bin/env bash
# Reproduces the figures in docs/performance.md. Each scenario starts a fresh release
# node in a temp dir (ports 0, loopback), runs loadtest against it, writes
# perf-results/<name>.json and stops the node.
#
#   scripts/perf.sh idle-tcp [CONNECTIONS]     idle TCP visitors (default 19000)
#   scripts/perf.sh idle-quic [CONNECTIONS]    idle QUIC visitors (default 10000)
#   scripts/perf.sh connect [CONNECTIONS]      TCP connect+login storm (default 10000)
#   scripts/perf.sh chat RATE [VISITORS AGENTS SECONDS]   durable chat (default 1000 visitors, 50 agents, 20 s)
#   scripts/perf.sh all
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SWITCHBOARD_ROOT"
cargo build --release -p switchboard-broker -p switchboard-loadtest
sb_save_rocksdb_cache
BIN="$SWITCHBOARD_ROOT/target/release"
OUT="$SWITCHBOARD_ROOT/perf-results"
mkdir -p "$OUT"

NODE_PID=""
stop_node() {
    if [ -n "$NODE_PID" ]; then
        kill "$NODE_PID" 2>/dev/null || true
        wait "$NODE_PID" 2>/dev/null || true
        NODE_PID=""
    fi
    [ -n "${NODE_DIR:-}" ] && rm -rf "$NODE_DIR"
}
trap stop_node EXIT

start_node() {
    NODE_DIR="$(mktemp -d)"
    "$BIN/switchboard" --data-dir "$NODE_DIR" --http-addr 127.0.0.1:0 --tcp-addr 127.0.0.1:0 \
        --quic-addr 127.0.0.1:0 --peer-addr 127.0.0.1:0 --log warn "$@" > "$NODE_DIR/node.log" 2>&1 &
    NODE_PID=$!
    for _ in $(seq 1 200); do
        [ -f "$NODE_DIR/ports.json" ] && break
        kill -0 "$NODE_PID" 2>/dev/null || { cat "$NODE_DIR/node.log" >&2; exit 2; }
        sleep 0.05
    done
    HTTP="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['http'])" "$NODE_DIR/ports.json")"
    export SWITCHBOARD_ADMIN_TOKEN="$(cat "$NODE_DIR/admin-token")"
    ADMIN_URL="http://$HTTP"
}

run() { # name, loadtest args...
    local name="$1"; shift
    start_node
    echo "== $name: loadtest $* (node pid $NODE_PID)" >&2
    "$BIN/loadtest" "$@" --admin-url "$ADMIN_URL" --json "$OUT/$name.json"
    local rc=$?
    stop_node
    return $rc
}

case "${1:-all}" in
    idle-tcp) run idle-tcp idle --transport tcp --connections "${2:-19000}" --duration 20s ;;
    idle-quic) run idle-quic idle --transport quic --connections "${2:-10000}" --duration 20s ;;
    connect) run connect connect --transport tcp --connections "${2:-10000}" --concurrency 64 ;;
    chat) run "chat-${2:?rate}" chat --transport tcp --rate "$2" --visitors "${3:-1000}" --agents "${4:-50}" --duration "${5:-20}s" ;;
    all)
        "$0" idle-tcp && "$0" idle-quic && "$0" connect && "$0" chat 1000 && "$0" chat 5000 && "$0" chat 10000
        ;;
    *) echo "usage: see the top of $0" >&2; exit 2 ;;
esac
