#!/usr/bin/env bash
# The broker/controller (kafka.Kafka) with a server.properties file: what Strimzi's kafka_run.sh execs
# under tini. See kafka-run-class.sh beside this file.
#   kafka-server-start.sh SERVER_PROPERTIES
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: kafka-server-start.sh SERVER_PROPERTIES [--override k=v ...]" >&2; exit 1; }
exec "$(dirname "$0")/kafka-run-class.sh" kafka.Kafka "$@"
