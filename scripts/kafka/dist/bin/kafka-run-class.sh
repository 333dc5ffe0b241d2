#!/usr/bin/env bash
# Licensed under the Apache License, Version 2.0. A trimmed equivalent of upstream's kafka-run-class.sh:
# run a Java class with every jar of ../libs on the class path.
#   kafka-run-class.sh [-daemon] [-name NAME] [-loggc] CLASS [ARGS...]
set -e
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-daemon] [-name servicename] [-loggc] classname [opts]"
  exit 1
fi
base_dir=$(cd "$(dirname "$0")/.." && pwd)

CLASSPATH="${CLASSPATH:+$CLASSPATH:}$base_dir/libs/*"
LOG_DIR="${LOG_DIR:-$base_dir/logs}"
KAFKA_LOG4J_OPTS="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$base_dir/config/tools-log4j2.yaml}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx256M}"
KAFKA_JVM_PERFORMANCE_OPTS="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}"
if [ -n "$JAVA_HOME" ]; then JAVA="$JAVA_HOME/bin/java"; else JAVA="java"; fi

DAEMON_MODE=false
DAEMON_NAME=""
GC_LOG_ENABLED=false
while [ $# -gt 0 ]; do
  case "$1" in
    -name) DAEMON_NAME=$2; CONSOLE_OUTPUT_FILE=$LOG_DIR/$DAEMON_NAME.out; shift 2 ;;
    -loggc) GC_LOG_ENABLED=true; shift ;;
    -daemon) DAEMON_MODE=true; shift ;;
    *) break ;;
  esac
done

GC_OPTS=""
if [ "$GC_LOG_ENABLED" = true ] && [ -n "$DAEMON_NAME" ]; then
  mkdir -p "$LOG_DIR"
  GC_OPTS="-Xlog:gc*:file=$LOG_DIR/$DAEMON_NAME-gc.log:time,tags:filecount=10,filesize=100M"
fi

# shellcheck disable=SC2086 # option strings are word-split on purpose, as upstream does
if [ "$DAEMON_MODE" = true ]; then
  mkdir -p "$LOG_DIR"
  nohup "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $GC_OPTS $KAFKA_JMX_OPTS $KAFKA_LOG4J_OPTS \
    "-Dkafka.logs.dir=$LOG_DIR" $KAFKA_OPTS -cp "$CLASSPATH" "$@" >"${CONSOLE_OUTPUT_FILE:-$LOG_DIR/kafka.out}" 2>&1 </dev/null &
else
  exec "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $GC_OPTS $KAFKA_JMX_OPTS $KAFKA_LOG4J_OPTS \
    "-Dkafka.logs.dir=$LOG_DIR" $KAFKA_OPTS -cp "$CLASSPATH" "$@"
fi
