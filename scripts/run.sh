#!/usr/bin/env bash
# Builds and runs one Switchboard node on the embedded defaults (RocksDB in ./data,
# a cluster of one; HTTP 127.0.0.1:8080, TCP 127.0.0.1:7000, QUIC 127.0.0.1:7001).
# Extra arguments go to the node, e.g. `./scripts/run.sh --data-dir /tmp/sb`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SWITCHBOARD_ROOT"
cargo build --release -p switchboard-broker --bin switchboard
sb_save_rocksdb_cache
exec "$SWITCHBOARD_ROOT/target/release/switchboard" "$@"
