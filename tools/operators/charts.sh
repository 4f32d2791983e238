#!/usr/bin/env bash
# The operators' Helm charts for the local node (`make k8s-node-operators`; docs/kubernetes.md, "Operators
# on the local node"): `charts.sh NAME` prints the path of chart NAME's archive, fetched once per user into
# $(cache_root)/charts/ from its upstream repository at the pinned version (the kind path's: mk/k8s.mk's
# STRIMZI_CHART, PROM_CHARTS, KEDA_CHARTS and versions), and only when that repository cannot be reached
# from UPSTREAM_CHARTS (default ../shared/upstream beside the checkout, for machines that reach no chart
# repository), saying so on stderr. NAME: strimzi, kube-prometheus-stack, keda.
# A chart taken from UPSTREAM_CHARTS must say the pinned version in its Chart.yaml, or it is refused.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$here/../.." && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

name="${1:?usage: charts.sh strimzi|kube-prometheus-stack|keda}"
: "${HELM:=helm}"
case "$name" in
  strimzi)
    chart=strimzi-kafka-operator version="${STRIMZI_VERSION:?}" repo="" ref="${STRIMZI_CHART:?}" ;;
  kube-prometheus-stack)
    chart=kube-prometheus-stack version="${KPS_VERSION:?}" repo="${PROM_CHARTS:?}" ref=kube-prometheus-stack ;;
  keda)
    chart=keda version="${KEDA_CHART_VERSION:?}" repo="${KEDA_CHARTS:?}" ref=keda ;;
  *) echo "charts.sh: unknown chart '$name'" >&2; exit 2 ;;
esac

dir="$(cache_root)/charts"
archive="$dir/$chart-$version.tgz"
mkdir -p "$dir"
if [[ -f "$archive" ]]; then
  echo "$archive"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
args=(pull "$ref" --version "$version" --destination "$tmp")
[[ -z "$repo" ]] || args+=(--repo "$repo")
from="${repo:-$ref}"
if timeout 120 "$HELM" "${args[@]}" >"$tmp/pull.log" 2>&1 && [[ -f "$tmp/$chart-$version.tgz" ]]; then
  mv "$tmp/$chart-$version.tgz" "$archive"
  echo "charts: $chart $version from $from" >&2
  echo "$archive"
  exit 0
fi
fallback="${UPSTREAM_CHARTS:-$ROOT/../shared/upstream}/$chart-$version.tgz"
if [[ ! -f "$fallback" ]]; then
  echo "charts: cannot pull $chart $version from $from ($(tail -n 1 "$tmp/pull.log")) and there is no" \
    "$fallback: set UPSTREAM_CHARTS to a directory holding $chart-$version.tgz" >&2
  exit 1
fi
found="$(tar -xzOf "$fallback" "$chart/Chart.yaml" | sed -n 's/^version: *//p' | tr -d '"' | head -n 1)"
if [[ "$found" != "$version" ]]; then
  echo "charts: $fallback is version '$found', not $version" >&2
  exit 1
fi
echo "charts: $chart $version could not be pulled from $from ($(tail -n 1 "$tmp/pull.log" | cut -c1-160));" \
  "using $fallback (UPSTREAM_CHARTS)" >&2
echo "$fallback"
