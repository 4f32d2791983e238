#!/usr/bin/env bash
# Build what goes into the operators' images, once per user (`make operators-build`; docs/kubernetes.md,
# "Operators on the local node"):
#   strimzi              Strimzi's cluster operator from its source (strimzi.sh) + Strimzi's Kafka image's files
#   prometheus-operator  prometheus-operator and prometheus-config-reloader (go.sh, wrapper module)
#   prometheus           Prometheus' server and promtool (go.sh, wrapper module)
#   keda                 KEDA's operator, metrics API server and admission webhooks (go.sh, wrapper module)
# `build.sh [NAME...]` (default: all of them). Everything lands in $(cache_root)/<name>-<version>/ (see
# lib.sh): a second run, from any clone, prints "cached" and builds nothing. One build of a kind at a time
# per user (flock), so two clones never build the same thing twice. Builds run at nice 19 and, for Go,
# one package at a time (OPERATORS_GOFLAGS, default -p=1): other work on the machine goes first.
# Prints one line per part: built (seconds, size) or cached. `build.sh --print-dirs` prints where each
# part's output is (the image specs in images/ name them) and builds nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$here/../.." && pwd)"
export ROOT  # strimzi.sh: the checkout (tools/kafka/pom.xml, ../shared beside it)
# shellcheck source=versions
source "$here/versions"
# shellcheck source=lib.sh
source "$here/lib.sh"
# shellcheck source=strimzi.sh
source "$here/strimzi.sh"
# shellcheck source=go.sh
source "$here/go.sh"

all=(strimzi prometheus-operator prometheus keda)
if [[ "${1:-}" == --print-dirs ]]; then
  echo "strimzi-operator=$(strimzi_dir)/operator"
  echo "strimzi-kafka=$(strimzi_dir)/kafka-$KAFKA_VERSION"
  for name in prometheus-operator prometheus keda; do echo "$name=$(go_dir "$name")"; done
  exit 0
fi
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=("${all[@]}")
for name in "${names[@]}"; do
  case "$name" in
    strimzi) build_lock strimzi; build_strimzi ;;
    prometheus-operator | prometheus | keda) build_lock "$name"; build_go "$name" ;;
    *) echo "build.sh: unknown part '$name' (known: ${all[*]})" >&2; exit 2 ;;
  esac
  exec 9>&-  # release the lock before the next part
done
