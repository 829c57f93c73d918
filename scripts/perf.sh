#!/usr/bin/env bash
# Reproduces the figures in docs/performance.md. Each scenario starts a fresh release
# node in a temp dir (ports 0, loopback), runs loadtest against it, writes
# perf-results/<name>.json and stops the node.
#
#   scripts/perf.sh idle-tcp [CONNECTIONS]     idle TCP visitors (default 19000)
#   scripts/perf.sh idle-quic [CONNECTIONS]    idle QUIC visitors (default 10000)
#   scripts/perf.sh connect [CONNECTIONS]      TCP connect+login storm (default 10000)
#   scripts/perf.sh chat RATE [VISITORS AGENTS SECONDS]   durable chat (default 1000 visitors, 50 agents, 20 s)
#   scripts/perf.sh idle-cluster [NODES SECONDS]   CPU of an idle N-node cluster, 64 shards x 3
#                                                 (default 3 nodes, 60 s; deploy/local-cluster.sh)
#   scripts/perf.sh chat-cluster RATE [VISITORS AGENTS SECONDS]   durable chat on a 3-process
#                                                 cluster (clients spread over the nodes)
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

start_cluster() { # nodes; sets CLUSTER_DIR
    CLUSTER_DIR="$(mktemp -d)"
    local dir="$CLUSTER_DIR"
    export SB_CLUSTER_DIR="$dir" SB_BIN="$BIN/switchboard" SB_BASE_PORT=27000 SB_NODE_ARGS="--log warn"
    trap "deploy/local-cluster.sh stop >/dev/null; rm -rf '$dir'" EXIT
    deploy/local-cluster.sh start "$1" >&2
    # Wait until every shard is fully replicated, nothing lags and leaders are spread
    # (every shard's leader known, no node leading 2 more than another), then measure.
    for _ in $(seq 1 600); do
        deploy/local-cluster.sh status --json > "$dir/status.json" 2>/dev/null || true
        if python3 - "$dir/status.json" <<'PY'; then break; fi
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(1)
leads = [n["leads"] for n in s["nodes"]]
want = min(s["replication"] or 1, len(s["nodes"]))
# Leaders and lag are known for the shards node 1 hosts (all of them up to 3 nodes).
hosted = [sh for sh in s["shards"] if sh["here"]]
settled = all(len(sh["replicas"]) == want for sh in s["shards"]) and all(sh["leader"] is not None and not any(sh["here"]["lag"].values()) for sh in hosted)
balanced = len(hosted) < len(s["shards"]) or (sum(leads) == s["shard_count"] and max(leads) - min(leads) <= 2)
sys.exit(0 if s["shards"] and settled and balanced else 1)
PY
        sleep 0.5
    done
    deploy/local-cluster.sh status >&2
}

idle_cluster() { # nodes, seconds
    start_cluster "$1"
    python3 - "$CLUSTER_DIR" "$1" "$2" "$OUT/idle-cluster.json" <<'PY'
import json, os, sys, time
d, nodes, secs, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
pids = [int(open(f"{d}/node-{n}/pid").read()) for n in range(1, nodes + 1)]
tick = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
def rss(pid):
    return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1]) * 1024
start = [cpu(p) for p in pids]; t0 = time.time()
time.sleep(secs)
used = [cpu(p) - s for p, s in zip(pids, start)]; wall = time.time() - t0
per_node = [round(100 * u / wall, 2) for u in used]
result = {"nodes": nodes, "shards": 64, "replication": 3, "seconds": round(wall, 1),
          "cpu_percent_of_one_core_per_node": per_node, "cpu_percent_of_one_core_total": round(sum(per_node), 2),
          "rss_bytes_per_node": [rss(p) for p in pids]}
json.dump(result, open(out, "w"), indent=2)
print(json.dumps(result, indent=2))
PY
}

chat_cluster() { # rate, visitors, agents, seconds
    start_cluster 3
    local name="chat-cluster-$1"
    local leaders_before
    leaders_before="$(leaders)"
    echo "== $name: loadtest chat against 3 nodes (tenant on node 1; clients round-robin over the nodes)" >&2
    SWITCHBOARD_ADMIN_TOKEN="$(cat "$CLUSTER_DIR/admin-token")" "$BIN/loadtest" chat --transport tcp \
        --rate "$1" --visitors "$2" --agents "$3" --duration "$4s" \
        --admin-url "http://127.0.0.1:27010" --target 127.0.0.1:27011,127.0.0.1:27021,127.0.0.1:27031 \
        --json "$OUT/$name.json"
    local rc=$?
    # Shards led per node before and after: a change means elections during the run.
    echo "shards led per node before the run: $leaders_before; after: $(leaders)" | tee -a "$OUT/$name.leaders" >&2
    return $rc
}

leaders() {
    deploy/local-cluster.sh status --json 2>/dev/null | python3 -c "import json,sys; print([n['leads'] for n in json.load(sys.stdin)['nodes']])"
}

case "${1:-all}" in
    idle-cluster) idle_cluster "${2:-3}" "${3:-60}" ;;
    chat-cluster) chat_cluster "${2:?rate}" "${3:-1000}" "${4:-50}" "${5:-20}" ;;
    idle-tcp) run idle-tcp idle --transport tcp --connections "${2:-19000}" --duration 20s ;;
    idle-quic) run idle-quic idle --transport quic --connections "${2:-10000}" --duration 20s ;;
    connect) run connect connect --transport tcp --connections "${2:-10000}" --concurrency 64 ;;
    chat) run "chat-${2:?rate}" chat --transport tcp --rate "$2" --visitors "${3:-1000}" --agents "${4:-50}" --duration "${5:-20}s" ;;
    all)
        "$0" idle-tcp && "$0" idle-quic && "$0" connect && "$0" chat 1000 && "$0" chat 5000 && "$0" chat 10000
        ;;
    *) echo "usage: see the top of $0" >&2; exit 2 ;;
esac
