#!/usr/bin/env bash
# Build the local control plane's binaries once: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler (tools/k8s/{etcd,kube}) and kwok (go install), one at a time, niced, GOFLAGS=-p=2.
# They are kept per user outside the clone, in $K8S_BIN_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/login-stream/<name>-<version>/), so a fresh clone relinks nothing, and
# linked into $1 (the clone's .cache/k8s/bin). Go's own build cache makes a rebuild after a version
# change mostly a relink. Prints one line per binary: built (seconds) or cached.
# `build.sh --link-only BIN_DIR` builds nothing: it links what is cached and exits 3 if anything is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions
source "$here/versions"
link_only=false
if [[ "${1:-}" == --link-only ]]; then link_only=true; shift; fi
out="${1:?usage: build.sh [--link-only] BIN_DIR}"
cache="${K8S_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/login-stream}"
mkdir -p "$out" "$cache"
# one build at a time per user: a second `make test` (another clone, another worktree) waits for the
# first and then finds the binaries cached instead of compiling the same packages beside it
if ! $link_only; then
  exec 9>"$cache/.build.lock"
  flock 9
fi
missing=0
export GOFLAGS="${K8S_GOFLAGS:--p=2} -mod=readonly -buildvcs=false" CGO_ENABLED=0
nice_="nice -n ${K8S_BUILD_NICE:-15}"

minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  # what `kubectl version` and Helm's kubeVersion checks read (hack/lib/version.sh sets the same)
  kube_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# build NAME VERSION DIR PACKAGE LDFLAGS: go build PACKAGE inside module DIR unless already cached
build() {
  local name="$1" version="$2" dir="$3" pkg="$4" ldflags="$5"
  local target="$cache/$name-$version/$name"
  if [[ ! -x "$target" ]] && $link_only; then
    missing=1
    return
  elif [[ ! -x "$target" ]]; then
    local start=$SECONDS
    mkdir -p "$(dirname "$target")"
    (cd "$dir" && $nice_ go build -trimpath -ldflags "$ldflags" -o "$target.tmp.$$" "$pkg")
    mv -f "$target.tmp.$$" "$target"
    echo "k8s-api: built $name $version in $((SECONDS - start))s -> $target"
  else
    echo "k8s-api: $name $version cached ($target)"
  fi
  ln -sfn "$target" "$out/$name"
}

build etcd "$ETCD_VERSION" "$here/etcd" . "-s -w"
build kube-apiserver "$KUBERNETES_VERSION" "$here/kube" k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
build kube-controller-manager "$KUBERNETES_VERSION" "$here/kube" k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags"
build kube-scheduler "$KUBERNETES_VERSION" "$here/kube" k8s.io/kubernetes/cmd/kube-scheduler "$kube_ldflags"
# the real node (make k8s-node-up): kubelet and kube-proxy from the same pinned module
if [[ "${K8S_NODE_BINARIES:-1}" == 1 ]]; then
  build kubelet "$KUBERNETES_VERSION" "$here/kube" k8s.io/kubernetes/cmd/kubelet "$kube_ldflags"
  build kube-proxy "$KUBERNETES_VERSION" "$here/kube" k8s.io/kubernetes/cmd/kube-proxy "$kube_ldflags"
  # the sandbox ("pause") image's binary: pause.c of the same kubernetes module, static, as its Makefile
  # builds it (CFLAGS -Os -Wall -Werror -static -DVERSION=...)
  pause="$cache/pause-$PAUSE_VERSION/pause"
  if [[ ! -x "$pause" ]] && $link_only; then
    missing=1
  elif [[ ! -x "$pause" ]]; then
    src="$(cd "$here/kube" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
    mkdir -p "$(dirname "$pause")"
    gcc -Os -Wall -Werror -static "-DVERSION=v$PAUSE_VERSION-login-stream" -o "$pause.tmp.$$" "$src"
    mv -f "$pause.tmp.$$" "$pause"
    echo "k8s-api: built pause $PAUSE_VERSION -> $pause"
  else
    echo "k8s-api: pause $PAUSE_VERSION cached ($pause)"
  fi
  [[ -x "$pause" ]] && ln -sfn "$pause" "$out/pause"
  # cluster DNS: CoreDNS from its own module (its go.mod decides its dependencies, as for kwok)
  coredns="$cache/coredns-$COREDNS_VERSION/coredns"
  if [[ ! -x "$coredns" ]] && $link_only; then
    missing=1
  elif [[ ! -x "$coredns" ]]; then
    start=$SECONDS
    mkdir -p "$(dirname "$coredns")"
    (cd "$(dirname "$coredns")" && GOFLAGS="${K8S_GOFLAGS:--p=2}" GOBIN="$(dirname "$coredns")" \
      $nice_ go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION")
    echo "k8s-api: built coredns $COREDNS_VERSION in $((SECONDS - start))s -> $coredns"
  else
    echo "k8s-api: coredns $COREDNS_VERSION cached ($coredns)"
  fi
  [[ -x "$coredns" ]] && ln -sfn "$coredns" "$out/coredns"
fi

kwok="$cache/kwok-$KWOK_VERSION/kwok"
if [[ ! -x "$kwok" ]] && $link_only; then
  exit 3
elif [[ ! -x "$kwok" ]]; then
  start=$SECONDS
  mkdir -p "$(dirname "$kwok")"
  # go install in module mode outside any module: kwok's own go.mod and go.sum decide its dependencies
  (cd "$(dirname "$kwok")" && GOFLAGS="${K8S_GOFLAGS:--p=2}" GOBIN="$(dirname "$kwok")" \
    $nice_ go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
  echo "k8s-api: built kwok $KWOK_VERSION in $((SECONDS - start))s -> $kwok"
else
  echo "k8s-api: kwok $KWOK_VERSION cached ($kwok)"
fi
ln -sfn "$kwok" "$out/kwok"
exit $(( missing ? 3 : 0 ))
