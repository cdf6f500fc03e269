#!/usr/bin/env bash
# Runs Runnel's end-to-end Python tests against the real broker binary.
#
#   e2e/run-tests.sh                 # the whole suite (no -x: every test runs)
#   e2e/run-tests.sh -k kcat         # any pytest arguments pass through
#
# Environment:
#   RUNNEL_BROKER_BIN   broker to test (default: <repo>/target/debug/runnel-broker);
#                       e2e/reference/kafka-as-runnel runs Apache Kafka instead
#   RUNNEL_E2E_BUILD=1  `cargo build -p runnel-broker` first
#   RUNNEL_E2E_OUT      results dir (default: <repo>/target/e2e): junit.xml, and
#                       tmp/ with each test's broker data dirs and broker.log
#   RUNNEL_CACHE        where setup.sh keeps the venv (default: ~/.cache/runnel)
# Exits with pytest's status: nonzero when any test fails or none ran.
set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$E2E_DIR/.." && pwd)"
VENV="${RUNNEL_CACHE:-$HOME/.cache/runnel}/venv"
OUT="${RUNNEL_E2E_OUT:-$REPO/target/e2e}"

"$E2E_DIR/setup.sh"

if [ "${RUNNEL_E2E_BUILD:-0}" = 1 ]; then
    (cd "$REPO" && cargo build -p runnel-broker)
fi
BIN="${RUNNEL_BROKER_BIN:-$REPO/target/debug/runnel-broker}"
export RUNNEL_BROKER_BIN="$BIN"
if [ -e "$BIN" ]; then
    echo "broker: $BIN (modified $(date -r "$BIN" '+%F %T'))"
else
    echo "broker: $BIN does not exist (build it: cargo build -p runnel-broker)" >&2
fi

mkdir -p "$OUT"
cd "$E2E_DIR"
set +e
"$VENV/bin/python" -m pytest \
    --junitxml="$OUT/junit.xml" \
    --basetemp="$OUT/tmp" \
    -ra --durations=10 \
    "$@"
status=$?
set -e
echo "junit report: $OUT/junit.xml; broker logs and data dirs: $OUT/tmp"
exit "$status"
