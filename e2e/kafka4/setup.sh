#!/usr/bin/env bash
# Fetches the jars of Kafka 4.x's clients and tools (kafka-tools and what it
# needs, versions in pom.xml) from Maven Central into
# ${RUNNEL_CACHE:-$HOME/.cache/runnel}/kafka4-<version>/libs, for
# e2e/tests/test_kafka4_clients.py. Idempotent; quick when they are there.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"
LIBS="${RUNNEL_CACHE:-$HOME/.cache/runnel}/kafka4-$VERSION/libs"
if ! ls "$LIBS"/kafka-tools-"$VERSION".jar "$LIBS"/kafka-clients-"$VERSION".jar >/dev/null 2>&1; then
    command -v mvn >/dev/null || { echo "kafka4/setup: needs mvn and java" >&2; exit 1; }
    echo "kafka4/setup: fetching Kafka $VERSION's clients and tools into $LIBS" >&2
    rm -rf "$LIBS"
    mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$LIBS"
fi
echo "kafka4: $LIBS (Kafka $VERSION clients and tools)"
