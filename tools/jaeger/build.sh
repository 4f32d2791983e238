#!/usr/bin/env bash
# Build Jaeger v2 (the local trace backend of `make run`; docs/observability.md, "Tracing") once per user
# into $(cache_root)/jaeger-<version>/jaeger and print that path. A second run, from any clone, builds
# nothing. One build at a time per user (flock), at nice ${OPERATORS_NICE:-19}, one package at a time
# (JAEGER_GOFLAGS, default -p=1), CGO off, -trimpath, stripped.
#
# Jaeger v2 is tagged v1.X.Y in its Go module (v1.76.0 is Jaeger v2.13.0, its CHANGELOG's
# "v1.76.0 / v2.13.0"); cmd/jaeger is the v2 binary (an OpenTelemetry Collector distribution). It is
# built in its own module directory (GOWORK=off, -mod=readonly), so its go.mod, go.sum and replace
# directives decide, as tools/operators/go.sh does for Prometheus. The module carries no compiled UI
# (cmd/query/app/ui/actual/ is empty; the assets come from the jaeger-ui repository's npm build): the
# binary serves the query API (/api/traces/<id>, /api/services, /api/v3/...) and a placeholder page.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../operators/lib.sh
source "$here/../operators/lib.sh"
# shellcheck source=versions
source "$here/versions"

out="$(cache_root)/jaeger-$JAEGER_VERSION"
target="$out/jaeger"
if [[ "${1:-}" == --print-path ]]; then
  echo "$target"
  exit 0
fi
build_lock jaeger
if [[ -x "$target" ]]; then
  echo "$target"
  exit 0
fi
start=$SECONDS
dir="$(module_dir "github.com/jaegertracing/jaeger@$JAEGER_MODULE_VERSION")"
mkdir -p "$out"
pkg=github.com/jaegertracing/jaeger/internal/version
ldflags="-s -w -X $pkg.latestVersion=$JAEGER_VERSION -X $pkg.commitSHA=$JAEGER_MODULE_VERSION"
(cd "$dir" && GOWORK=off GOFLAGS="${JAEGER_GOFLAGS:--p=1} -mod=readonly -buildvcs=false" CGO_ENABLED=0 \
  niced go build -trimpath -ldflags "$ldflags" -o "$target.tmp.$$" ./cmd/jaeger) >&2
mv -f "$target.tmp.$$" "$target"
echo "jaeger: built in $((SECONDS - start))s, $(du -m "$target" | cut -f1) MB -> $target" >&2
echo "$target"
