#!/usr/bin/env bash
# login-stream's own launcher for Strimzi's Kafka image (tools/operators/strimzi.sh puts it in
# /opt/kafka/bin): Maven Central serves Kafka's jars but not the bin/ scripts of Kafka's release archive,
# which Strimzi's kafka_run.sh calls (bin/kafka-storage.sh, bin/kafka-server-start.sh). This runs a main
# class with every jar of $KAFKA_HOME/libs on the class path and the environment variables those scripts
# read and Strimzi sets: KAFKA_HEAP_OPTS (the Kafka resource's jvmOptions -Xms/-Xmx, or
# dynamic_resources.sh), KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_GC_LOG_OPTS (set_kafka_gc_options.sh),
# KAFKA_JMX_OPTS (set_kafka_jmx_options.sh), KAFKA_LOG4J_OPTS (kafka_run.sh) and KAFKA_OPTS (the agents,
# system properties). Defaults where a variable is unset: a 256 MiB heap and G1 (Kafka's documented
# defaults for its scripts).
#   kafka-run-class.sh CLASS [ARGS...]
set -euo pipefail
main="${1:?usage: kafka-run-class.sh CLASS [ARGS...]}"
shift
home="${KAFKA_HOME:-$(cd "$(dirname "$0")/.." && pwd)}"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
heap="${KAFKA_HEAP_OPTS:--Xmx256M}"
performance="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"
# word splitting of the option variables is intended: each holds several JVM options
# shellcheck disable=SC2086
exec "$java" $heap $performance ${KAFKA_GC_LOG_OPTS:-} ${KAFKA_JMX_OPTS:-} ${KAFKA_LOG4J_OPTS:-} ${KAFKA_OPTS:-} \
  -cp "$home/libs/*" "$main" "$@"
