#!/usr/bin/env bash
# Kafka's storage tool (kafka.tools.StorageTool): Strimzi's kafka_run.sh formats the KRaft log
# directories with it (`format -t <cluster id> -r <metadata version> -c <config> -g`). A short-lived
# tool: a small heap unless KAFKA_HEAP_OPTS says otherwise. See kafka-run-class.sh beside this file.
set -euo pipefail
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx256M}"
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
