#!/usr/bin/env bash
# Installs what Runnel's end-to-end tests need, from the package registries:
#   - kcat (Debian package), if `kcat` is not on PATH;
#   - Prometheus and promtool (Debian package prometheus), if not on PATH, for
#     the tests of the chart's dashboard and alert rules;
#   - a Python venv with the pinned packages of e2e/requirements.txt;
#   - Apache Kafka's jars (e2e/reference/setup-kafka.sh), for the tests that
#     drive Kafka's own tools (kafka-reassign-partitions) against Runnel;
#   - Kafka 4.x's clients and tools (e2e/kafka4/setup.sh), for
#     test_kafka4_clients.py;
# Idempotent: safe to re-run, and quick when everything is already there.
# The venv lives in ${RUNNEL_CACHE:-$HOME/.cache/runnel}/venv and its packages
# are reinstalled only when requirements.txt changes (a sha256 stamp).
set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${RUNNEL_CACHE:-$HOME/.cache/runnel}"
VENV="$CACHE_DIR/venv"
REQS="$E2E_DIR/requirements.txt"
STAMP="$VENV/.runnel-requirements.sha256"
PYTHON="${PYTHON:-python3}"

log() { echo "setup: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# --- kcat -------------------------------------------------------------------
if ! command -v kcat >/dev/null 2>&1; then
    log "kcat not found; installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y kcat; then
        log "apt-get install failed; running apt-get update and retrying"
        as_root apt-get update
        as_root apt-get install -y kcat
    fi
fi
KCAT="$(command -v kcat)"

# --- openssl (the TLS tests make their certificates with it) ------------------
if ! command -v openssl >/dev/null 2>&1; then
    log "openssl not found; installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y --no-install-recommends openssl; then
        as_root apt-get update
        as_root apt-get install -y --no-install-recommends openssl
    fi
fi

# --- Prometheus ---------------------------------------------------------------
# The package's service is not started here (no init system runs it); the
# tests start their own server on a free port.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    log "prometheus not found; installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y --no-install-recommends prometheus; then
        log "apt-get install failed; running apt-get update and retrying"
        as_root apt-get update
        as_root apt-get install -y --no-install-recommends prometheus
    fi
fi

# --- Python venv ------------------------------------------------------------
mkdir -p "$CACHE_DIR"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating venv at $VENV (with $("$PYTHON" --version 2>&1))"
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV"; then
        # Debian's own python3 needs python3-venv for ensurepip
        log "python -m venv failed; installing python3-venv"
        rm -rf "$VENV"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get install -y python3-venv || { as_root apt-get update && as_root apt-get install -y python3-venv; }
        "$PYTHON" -m venv "$VENV"
    fi
fi

want_hash="$(sha256sum "$REQS" | cut -d' ' -f1)"
have_hash="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want_hash" != "$have_hash" ]; then
    log "installing pinned packages from $REQS"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
    # Fail here, not in the middle of a test run, if an install is unusable.
    "$VENV/bin/python" -c 'import pytest, pytest_timeout, confluent_kafka, kafka, snappy, lz4, zstandard'
    echo "$want_hash" > "$STAMP"
else
    log "venv packages up to date with requirements.txt"
fi

# --- Kafka's jars, for its command-line tools ---------------------------------
bash "$E2E_DIR/reference/setup-kafka.sh"
# --- a current Kafka 4.x's clients and tools -------------------------------------
bash "$E2E_DIR/kafka4/setup.sh"

echo "kcat:   $KCAT ($("$KCAT" -V 2>&1 | sed -n 's/^Version \([^ ]*\).*/\1/p'))"
echo "prometheus: $(command -v prometheus) ($(prometheus --version 2>&1 | head -n 1))"
echo "venv:   $VENV"
echo "python: $VENV/bin/python ($("$VENV/bin/python" --version 2>&1))"
"$VENV/bin/python" - <<'PY'
import confluent_kafka, kafka, pytest
print(f"pytest {pytest.__version__}, confluent-kafka {confluent_kafka.__version__} "
      f"(librdkafka {confluent_kafka.libversion()[0]}), kafka-python {kafka.__version__}")
PY
