#!/usr/bin/env bash
# Prepares the Java Kafka client for the e2e group tests (test_groups.py):
#   - kafka-clients and slf4j-simple (versions in e2e/java/pom.xml), fetched by
#     mvn `dependency:copy-dependencies` into ${RUNNEL_CACHE:-$HOME/.cache/runnel}/java-libs;
#   - e2e/java/src/*.java (GroupConsumer; WordCount, with Kafka Streams)
#     compiled with javac into .../java-classes.
# Idempotent: the jars are fetched again only when pom.xml changes and the
# program is recompiled only when its source (or the jars) change (sha256 stamps).
# The last line of stdout is `classpath: <classpath for java -cp>`.
set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JAVA_DIR="$E2E_DIR/java"
CACHE_DIR="${RUNNEL_CACHE:-$HOME/.cache/runnel}"
LIBS="$CACHE_DIR/java-libs"
CLASSES="$CACHE_DIR/java-classes"
POM="$JAVA_DIR/pom.xml"
SRCS=("$JAVA_DIR"/src/*.java)

log() { echo "setup-java: $*" >&2; }

for tool in java javac mvn; do
    command -v "$tool" >/dev/null 2>&1 || {
        log "needs $tool (e.g. apt-get install -y maven default-jdk-headless)"; exit 1; }
done

# --- jars -------------------------------------------------------------------
pom_hash="$(sha256sum "$POM" | cut -d' ' -f1)"
if [ "$(cat "$LIBS/.pom.sha256" 2>/dev/null || true)" != "$pom_hash" ]; then
    log "fetching the jars of $POM into $LIBS"
    rm -rf "$LIBS"
    mkdir -p "$LIBS"
    mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIBS" >&2
    ls "$LIBS"/kafka-clients-*.jar >/dev/null
    echo "$pom_hash" > "$LIBS/.pom.sha256"
else
    log "jars up to date in $LIBS"
fi

# --- the program --------------------------------------------------------------
src_hash="$( (sha256sum "${SRCS[@]}"; echo "$pom_hash") | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$CLASSES/.src.sha256" 2>/dev/null || true)" != "$src_hash" ] \
        || [ ! -f "$CLASSES/GroupConsumer.class" ] || [ ! -f "$CLASSES/WordCount.class" ]; then
    log "compiling ${SRCS[*]} into $CLASSES"
    rm -rf "$CLASSES"
    mkdir -p "$CLASSES"
    javac -Xlint:all -cp "$LIBS/*" -d "$CLASSES" "${SRCS[@]}"
    echo "$src_hash" > "$CLASSES/.src.sha256"
else
    log "the programs are up to date in $CLASSES"
fi

echo "java:   $(java -version 2>&1 | head -n1)"
echo "classpath: $CLASSES:$LIBS/*"
