#!/usr/bin/env bash
# Fetch the Apache Kafka broker (KRaft) and its runtime jars from Maven Central, and optionally pack
# them into the same layout as the official tarball.
#
#   scripts/kafka/fetch.sh [fetch]   -> $SUMFLOW_CACHE/kafka-<ver>/libs/*.jar   (idempotent)
#   scripts/kafka/fetch.sh pack      -> $SUMFLOW_CACHE/dist/kafka_2.13-<ver>.tgz (+ .sha256)
#   scripts/kafka/fetch.sh path      -> prints the libs directory (fetching first if needed)
#
# No downloads.apache.org here: only Maven Central is reachable, so a throwaway pom and
# `mvn dependency:copy-dependencies` resolve kafka_2.13 + kafka-server/-storage/-tools and a log4j2
# implementation (log4j-core + log4j-slf4j2-impl, with slf4j-api 2.x so the binding is found).
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
SCALA_VERSION="2.13"
LOG4J_VERSION="2.24.3"
SLF4J_VERSION="2.0.17"
CACHE="${SUMFLOW_CACHE:-$HOME/.cache/sumflow}"
HOME_DIR="$CACHE/kafka-$KAFKA_VERSION"
LIBS="$HOME_DIR/libs"
STAMP="$HOME_DIR/.complete"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIST_NAME="kafka_${SCALA_VERSION}-${KAFKA_VERSION}"

log() { echo "kafka-fetch: $*" >&2; }

stamp_text() { echo "kafka=$KAFKA_VERSION scala=$SCALA_VERSION log4j=$LOG4J_VERSION slf4j=$SLF4J_VERSION"; }

write_pom() {
  local dep deps=""
  for dep in "org.apache.kafka:kafka_${SCALA_VERSION}:$KAFKA_VERSION" \
             "org.apache.kafka:kafka-server:$KAFKA_VERSION" \
             "org.apache.kafka:kafka-storage:$KAFKA_VERSION" \
             "org.apache.kafka:kafka-tools:$KAFKA_VERSION" \
             "org.apache.logging.log4j:log4j-core:$LOG4J_VERSION" \
             "org.apache.logging.log4j:log4j-slf4j2-impl:$LOG4J_VERSION" \
             "org.slf4j:slf4j-api:$SLF4J_VERSION"; do
    IFS=: read -r g a v <<<"$dep"
    deps+="<dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>"
  done
  cat >"$1" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.sumflow</groupId><artifactId>kafka-fetch</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>$deps</dependencies>
</project>
POM
}

do_fetch() {
  if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_text)" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || { log "Maven (mvn) is required: apt-get install -y maven"; exit 1; }
  mkdir -p "$CACHE"
  # Parallel test sessions may fetch at the same time: one does the work, the others wait.
  exec 9>"$CACHE/.kafka-fetch.lock"
  flock 9
  if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_text)" ]]; then
    return 0
  fi
  local work
  work="$(mktemp -d "$CACHE/.fetch.XXXXXX")"
  write_pom "$work/pom.xml"
  log "resolving kafka_$SCALA_VERSION $KAFKA_VERSION from Maven Central into $LIBS"
  mvn -q -B -Dstyle.color=never -f "$work/pom.xml" -Dmaven.repo.local="$CACHE/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$work/libs" >&2
  if ls "$work/libs" | grep -q '^slf4j-api-1\.'; then
    log "unexpected slf4j-api 1.x in the resolved jars"; exit 1
  fi
  rm -rf "$HOME_DIR"
  mkdir -p "$HOME_DIR"
  mv "$work/libs" "$LIBS"
  rm -rf "$work"
  stamp_text >"$STAMP"
  log "$(ls "$LIBS" | wc -l) jars in $LIBS"
}

do_pack() {
  do_fetch
  local out="$CACHE/dist" stage
  mkdir -p "$out"
  stage="$(mktemp -d "$CACHE/.pack.XXXXXX")"
  local root="$stage/$DIST_NAME"
  mkdir -p "$root/bin" "$root/libs" "$root/config"
  cp "$LIBS"/*.jar "$root/libs/"
  cp "$HERE"/dist/bin/*.sh "$root/bin/"
  cp "$HERE"/dist/config/* "$root/config/"
  chmod 0755 "$root"/bin/*.sh
  # Reproducible archive: fixed owner and mtime, sorted names, so the checksum is stable. Written under
  # names of this process and renamed into place, so concurrent packs (two Molecule scenarios) and
  # readers of the checksum file never see a partial file.
  tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime='2025-01-01 00:00Z' \
    -czf "$out/$DIST_NAME.tgz.tmp.$$" "$DIST_NAME"
  (cd "$out" && sha256sum "$DIST_NAME.tgz.tmp.$$" | sed "s/[.]tmp[.]$$\$//" >"$DIST_NAME.tgz.sha256.tmp.$$")
  mv "$out/$DIST_NAME.tgz.tmp.$$" "$out/$DIST_NAME.tgz"
  mv "$out/$DIST_NAME.tgz.sha256.tmp.$$" "$out/$DIST_NAME.tgz.sha256"
  rm -rf "$stage"
  log "packed $out/$DIST_NAME.tgz"
  echo "$out/$DIST_NAME.tgz"
}

case "${1:-fetch}" in
  fetch) do_fetch ;;
  path) do_fetch; echo "$LIBS" ;;
  pack) do_pack ;;
  *) echo "usage: $0 [fetch|path|pack]" >&2; exit 2 ;;
esac
