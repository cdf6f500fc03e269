#!/usr/bin/env bash
# Runnel vs Apache Kafka on this machine, one command:
#
#   e2e/bench/run.sh [--short|--full] [--cluster] [--no-record] [--reps N] [--systems kafka,runnel]
#                    [--wait-quiet SECONDS]
#
#   --short      (default) 1 repetition, 300k-500k records per produce row; about 3 minutes
#                (under 10) on a 2-core machine once the one-time set-up below is cached
#   --full       3 repetitions, 1M-2M records per produce row (about 20 minutes)
#   --smoke      a two-minute check of the harness itself (tiny counts, never recorded)
#   --cluster    three brokers per system (replication factor 3, min.insync.replicas=2,
#                racks zone-a/b/c), acks=all rows only; recorded in its own section
#                (short: about 10 minutes)
#   --wait-quiet SECONDS  before each system, wait up to SECONDS for other test suites
#                and builds (pytest, cargo, rustc, kube-apiserver, runnel-broker) to finish
#   --no-record  do not rewrite this mode's results section of docs/benchmarks.md
#
# One-time set-up, cached under ${RUNNEL_CACHE:-$HOME/.cache/runnel}: Kafka's jars
# (e2e/reference/setup-kafka.sh, mvn), rdkafka_performance built from the
# rdkafka-sys crate's librdkafka sources (e2e/bench/setup-rdkafka-perf.sh, cargo),
# kcat (apt). Then a release build of runnel-broker, and e2e/bench/bench.py runs
# both brokers one after the other on loopback with the same load generators.
# Logs and raw results: target/bench/<date>-<mode>/.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/../.." && pwd)"
CACHE_DIR="${RUNNEL_CACHE:-$HOME/.cache/runnel}"

mode=short
record=1
extra=()
cluster=""
while [ $# -gt 0 ]; do
    case "$1" in
        --short) mode=short ;;
        --full) mode=full ;;
        --smoke) mode=smoke; record=0 ;;
        --no-record) record=0 ;;
        --cluster) cluster="cluster-"; extra+=(--cluster) ;;
        --wait-quiet) extra+=(--wait-quiet "$2"); shift ;;
        --reps) extra+=(--reps "$2"); shift ;;
        --systems) extra+=(--systems "$2"); shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "run.sh: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y "$@" || { as_root apt-get update && as_root apt-get install -y "$@"; }
}

# --- tools from the package registries -------------------------------------
command -v kcat >/dev/null 2>&1 || { log "installing kcat"; apt_install kcat; }
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    log "installing a JDK and maven"; apt_install default-jdk-headless maven
fi
if ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1 || [ ! -e /usr/include/zlib.h ]; then
    log "installing a C toolchain and zlib headers"; apt_install build-essential zlib1g-dev
fi

kafka_line="$(bash "$REPO/e2e/reference/setup-kafka.sh" | tail -1)"      # kafka:  <libs> (Kafka <version>)
KAFKA_LIBS="$(echo "$kafka_line" | sed -n 's/^kafka: *\([^ ]*\) (Kafka \(.*\))$/\1/p')"
KAFKA_VERSION="$(echo "$kafka_line" | sed -n 's/^kafka: *\([^ ]*\) (Kafka \(.*\))$/\2/p')"
[ -d "$KAFKA_LIBS" ] || { log "could not find Kafka's jars (setup-kafka.sh said: $kafka_line)"; exit 1; }

rd_line="$(bash "$BENCH_DIR/setup-rdkafka-perf.sh" | tail -1)"   # rdkafka_performance: <path> (librdkafka <v>)
RDPERF="$(echo "$rd_line" | sed -n 's/^rdkafka_performance: \([^ ]*\) (librdkafka \(.*\))$/\1/p')"
RDVERSION="$(echo "$rd_line" | sed -n 's/^rdkafka_performance: \([^ ]*\) (librdkafka \(.*\))$/\2/p')"
[ -x "$RDPERF" ] || { log "could not build rdkafka_performance ($rd_line)"; exit 1; }

# --- the broker under test ---------------------------------------------------
log "cargo build --release -p runnel-broker"
(cd "$REPO" && cargo build --release -q -p runnel-broker)
# The commit the binary was built from (with a note if the broker's sources differ from it).
RUNNEL_COMMIT="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$REPO" status --porcelain -- broker Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    RUNNEL_COMMIT="$RUNNEL_COMMIT (plus uncommitted changes to the broker)"
fi
OUT="$REPO/target/bench/$(date -u +%Y%m%d-%H%M%S)-$cluster$mode"
mkdir -p "$OUT"
# A copy, so a rebuild by someone else during the run cannot swap the binary.
cp "$REPO/target/release/runnel-broker" "$OUT/runnel-broker"

PY="$CACHE_DIR/venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"

doc_args=()
[ "$record" = 1 ] && doc_args=(--doc "$REPO/docs/benchmarks.md")
exec "$PY" "$BENCH_DIR/bench.py" --mode "$mode" "${extra[@]}" \
    --kafka-libs "$KAFKA_LIBS" --kafka-version "$KAFKA_VERSION" \
    --runnel-bin "$OUT/runnel-broker" --runnel-commit "$RUNNEL_COMMIT" \
    --rdkafka-perf "$RDPERF" --rdkafka-version "$RDVERSION" \
    --kcat "$(command -v kcat)" --out "$OUT" "${doc_args[@]}"
