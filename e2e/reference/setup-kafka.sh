#!/usr/bin/env bash
# Fetches Apache Kafka's jars from Maven Central (through mvn, with pom.xml)
# into ${RUNNEL_CACHE:-$HOME/.cache/runnel}/kafka-<version>/libs, for
# kafka-as-runnel. Idempotent; quick when the jars are already there.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"
LIBS="${RUNNEL_CACHE:-$HOME/.cache/runnel}/kafka-$VERSION/libs"
if ! ls "$LIBS"/kafka_2.13-"$VERSION".jar "$LIBS"/connect-file-"$VERSION".jar >/dev/null 2>&1; then
    command -v mvn >/dev/null || { echo "setup-kafka: needs mvn and java (apt-get install -y maven default-jdk-headless)" >&2; exit 1; }
    echo "setup-kafka: fetching Kafka $VERSION jars into $LIBS" >&2
    mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies -DoutputDirectory="$LIBS"
fi
echo "kafka:  $LIBS (Kafka $VERSION)"
