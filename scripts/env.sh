# Sourced by scripts/run.sh, scripts/test.sh and .ci/run: makes a fresh machine able
# to build Switchboard, with no manual step.
#  1. librocksdb-sys runs bindgen, which needs libclang: install it if missing.
#  2. Compiling RocksDB's C++ is ~85 % of a cold build. Once built, its static
#     libraries are kept in a cache outside the clone and linked on later builds.
#     With an empty cache everything still builds from source.
set -euo pipefail

SWITCHBOARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SWITCHBOARD_ROOT

sb_log() { printf '[switchboard] %s\n' "$*" >&2; }

sb_apt_install() {
    # $@: Debian packages. Runs apt-get update once per call site, only if needed.
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    sb_log "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

sb_apt_install libclang-dev

# The cache key: librocksdb-sys version (from Cargo.lock) and the compression features
# chosen in Cargo.toml (snappy only).
sb_rocksdb_version="$(grep -A1 '^name = "librocksdb-sys"' "$SWITCHBOARD_ROOT/Cargo.lock" 2>/dev/null | sed -n 's/^version = "\([^"+]*\).*/\1/p' || true)"
SB_ROCKSDB_CACHE="${SWITCHBOARD_CACHE_DIR:-$HOME/.cache/switchboard}/librocksdb-sys-${sb_rocksdb_version:-unknown}-snappy"

if [ -n "$sb_rocksdb_version" ] && [ -f "$SB_ROCKSDB_CACHE/librocksdb.a" ] && [ -f "$SB_ROCKSDB_CACHE/libsnappy.a" ]; then
    export ROCKSDB_LIB_DIR="$SB_ROCKSDB_CACHE" ROCKSDB_STATIC=1
    export SNAPPY_LIB_DIR="$SB_ROCKSDB_CACHE" SNAPPY_STATIC=1
    sb_log "linking cached RocksDB from $SB_ROCKSDB_CACHE"
else
    sb_log "no cached RocksDB for librocksdb-sys ${sb_rocksdb_version:-?}: building it from source (10+ minutes on 2 cores)"
fi

# After a from-source build, keep the static libraries for next time.
sb_save_rocksdb_cache() {
    [ -n "${ROCKSDB_LIB_DIR:-}" ] && return 0
    [ -n "$sb_rocksdb_version" ] || return 0
    local a
    a="$(ls -t "$SWITCHBOARD_ROOT"/target/*/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1 || true)"
    [ -n "$a" ] || return 0
    mkdir -p "$SB_ROCKSDB_CACHE"
    cp "$a" "$SB_ROCKSDB_CACHE/librocksdb.a.tmp"
    strip --strip-debug "$SB_ROCKSDB_CACHE/librocksdb.a.tmp" 2>/dev/null || true
    cp "$(dirname "$a")/libsnappy.a" "$SB_ROCKSDB_CACHE/libsnappy.a"
    mv "$SB_ROCKSDB_CACHE/librocksdb.a.tmp" "$SB_ROCKSDB_CACHE/librocksdb.a"
    sb_log "cached RocksDB static libraries in $SB_ROCKSDB_CACHE"
}
