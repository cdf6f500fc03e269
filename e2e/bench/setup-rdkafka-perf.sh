#!/usr/bin/env bash
# Builds librdkafka's `rdkafka_performance` load generator from the librdkafka
# sources that the `rdkafka-sys` crate ships (`librdkafka/examples`), fetched
# by cargo from the crate registry (a throwaway crate + `cargo vendor`), into
#   ${RUNNEL_CACHE:-$HOME/.cache/runnel}/rdkafka-perf/bin/rdkafka_performance
# Idempotent: quick when the binary for the pinned version is already there.
# Needs cargo, a C compiler, make, and zlib headers (zlib1g-dev); SSL, SASL,
# zstd and curl are left out (the benchmark uses none of them).
# The last line of stdout is `rdkafka_performance: <path> (librdkafka <version>)`.
set -euo pipefail

RDKAFKA_SYS_VERSION="${RDKAFKA_SYS_VERSION:-4.10.0}"   # ships librdkafka 2.12.1
CACHE_DIR="${RUNNEL_CACHE:-$HOME/.cache/runnel}"
WORK="$CACHE_DIR/rdkafka-perf"
BIN="$WORK/bin/rdkafka_performance-$RDKAFKA_SYS_VERSION"

log() { echo "setup-rdkafka-perf: $*" >&2; }

if [ ! -x "$BIN" ]; then
    for tool in cargo cc make; do
        command -v "$tool" >/dev/null 2>&1 || { log "needs $tool"; exit 1; }
    done
    log "fetching rdkafka-sys $RDKAFKA_SYS_VERSION with cargo and building rdkafka_performance (about 2 minutes)"
    rm -rf "$WORK/crate" "$WORK/vendor"
    mkdir -p "$WORK/crate/src" "$WORK/bin"
    cat > "$WORK/crate/Cargo.toml" <<EOF
[package]
name = "runnel-bench-rdkafka-sources"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rdkafka-sys = { version = "=$RDKAFKA_SYS_VERSION", default-features = false }

[workspace]
EOF
    echo 'fn main() {}' > "$WORK/crate/src/main.rs"
    (cd "$WORK/crate" && cargo vendor --quiet --versioned-dirs "$WORK/vendor" >/dev/null)
    SRC="$(ls -d "$WORK"/vendor/rdkafka-sys-"$RDKAFKA_SYS_VERSION"*/librdkafka)"
    (
        cd "$SRC"
        ./configure --disable-ssl --disable-gssapi --disable-curl --disable-zstd >"$WORK/configure.log" 2>&1 \
            || { tail -20 "$WORK/configure.log" >&2; exit 1; }
        make -j"$(nproc)" -C src librdkafka.a >"$WORK/make.log" 2>&1 \
            && make -C examples rdkafka_performance >>"$WORK/make.log" 2>&1 \
            || { tail -30 "$WORK/make.log" >&2; exit 1; }
    )
    cp "$SRC/examples/rdkafka_performance" "$BIN.tmp"
    mv "$BIN.tmp" "$BIN"
    rm -rf "$WORK/vendor" "$WORK/crate/target"
fi

version="$({ "$BIN" 2>&1 || true; } | sed -n 's/^librdkafka version \([^ ]*\).*/\1/p' | head -1)"
echo "rdkafka_performance: $BIN (librdkafka $version)"
