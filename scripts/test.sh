#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need (libclang for the RocksDB
# bindings, promtool from Debian's prometheus package for the metrics check).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SWITCHBOARD_ROOT"
sb_apt_install prometheus
cargo build --workspace --tests
sb_save_rocksdb_cache
cargo test --workspace "$@"
