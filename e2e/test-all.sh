#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (e2e/setup.sh), then formatting, lints, unit and property tests, and the
# integration tests against real broker processes and real Kafka clients.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# One pass over the code: incremental compilation only adds gigabytes under
# target/ here (3 GB on a fresh run), which a CI disk may not have.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

step "toolchain components"
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done

step "test dependencies (e2e/setup.sh)"
bash e2e/setup.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

step "build the broker and the operator for the integration tests"
# --all-targets builds with the features `cargo test` resolved (dev-dependencies
# included), so both binaries link the dependencies it already compiled
# instead of compiling them twice more (once per package).
cargo build --workspace --all-targets
export RUNNEL_BROKER_BIN="$PWD/target/debug/runnel-broker"
export RUNNEL_OPERATOR_BIN="$PWD/target/debug/runnel-operator"
# kube-apiserver, etcd, kubectl and helm for the operator tests: built from
# Go modules on a machine's first run (minutes, longer than one test's
# timeout), cached after. Without Go the operator tests skip.
if command -v go >/dev/null 2>&1; then KUBE_UP_BUILD_ONLY=1 bash e2e/kube-up.sh >/dev/null; fi

step "integration tests (e2e/run-tests.sh)"
bash e2e/run-tests.sh "$@"
