#!/usr/bin/env bash
# Build Tilt (the dev loop: Tiltfile, `make tilt-ci-node`) once per user into
# $(cache_root)/tilt-<version>/tilt and print that path. A second run, from any clone, builds nothing.
# One build at a time per user (flock), at nice ${OPERATORS_NICE:-19}, TILT_GOFLAGS (default -p=1),
# -trimpath, stripped. CGO on (a C compiler needed), as upstream's release builds (.goreleaser.yml):
# Tilt parses Python with tree-sitter's C grammar (github.com/smacker/go-tree-sitter), which has no
# Go-only build (with CGO_ENABLED=0: "go-tree-sitter/python: build constraints exclude all Go files").
# `build.sh --print-path` prints the path and builds nothing.
#
# Design (docs/tilt.md, "Building Tilt"):
# - Built in a copy of its own module directory (GOWORK=off, -mod=readonly): its go.mod, go.sum and
#   replace directives decide (`go install …@version` refuses a module with replace directives; Tilt's
#   go.mod replaces k8s.io/apimachinery with its own fork, so a wrapper module would have to repeat them).
# - A copy, because the module has no compiled web UI: pkg/assets/build holds only robots.txt (the assets
#   come from web/'s yarn build). A build with neither embedded assets nor a version is a "dev" build that
#   runs `yarn install` + `yarn run start` on start-up and stops with a fatal error when yarn is absent;
#   a versioned build without assets stops with "running in prod mode, but JS/CSS files are not available".
#   So the copy gets one page of ours (tools/tilt/index.html, saying the UI is not built) as
#   pkg/assets/build/index.html and the version is set (main.version): Tilt then serves that page where
#   its UI would be, and everything else (tilt ci, the terminal UI, tilt get/logs/trigger) is unchanged.
# - The checksum database answers 404 for this module; its zip is checked against tools/tilt/versions'
#   pinned h1: hash instead (GONOSUMDB for this module only).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../operators/lib.sh
source "$here/../operators/lib.sh"
# shellcheck source=versions
source "$here/versions"

out="$(cache_root)/tilt-$TILT_VERSION"
target="$out/tilt"
if [[ "${1:-}" == --print-path ]]; then
  echo "$target"
  exit 0
fi
build_lock tilt
if [[ -x "$target" ]]; then
  echo "$target"
  exit 0
fi
start=$SECONDS
module=github.com/tilt-dev/tilt
info="$(cd / && GONOSUMDB="$module" GOFLAGS=-mod=mod go mod download -json "$module@$TILT_VERSION")"
sum="$(sed -n 's/^\t"Sum": "\(.*\)",$/\1/p' <<<"$info")"
dir="$(sed -n 's/^\t"Dir": "\(.*\)",$/\1/p' <<<"$info")"
if [[ "$sum" != "$TILT_MODULE_SUM" ]]; then
  echo "tilt: $module@$TILT_VERSION has checksum '${sum:-none}', tools/tilt/versions pins $TILT_MODULE_SUM" \
    "(the download failed, or the module is not the one pinned): not building" >&2
  grep '"Error"' <<<"$info" >&2 || true
  exit 1
fi
src="$out/src"
rm -rf "$src"
mkdir -p "$out"
cp -r "$dir" "$src"
chmod -R u+w "$src"
cp "$here/index.html" "$src/pkg/assets/build/index.html"
ldflags="-s -w -X main.version=${TILT_VERSION#v} -X main.date=1970-01-01"
(cd "$src" && GOWORK=off GONOSUMDB="$module" GOFLAGS="${TILT_GOFLAGS:--p=1} -mod=readonly -buildvcs=false" \
  CGO_ENABLED=1 niced go build -trimpath -ldflags "$ldflags" -o "$target.tmp.$$" ./cmd/tilt) >&2
mv -f "$target.tmp.$$" "$target"
rm -rf "$src"
echo "tilt: built in $((SECONDS - start))s, $(du -m "$target" | cut -f1) MB -> $target" >&2
echo "$target"
