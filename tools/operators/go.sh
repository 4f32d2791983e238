# shellcheck shell=bash
# The Go-built parts (sourced by build.sh): each binary built once per user into
# $(cache_root)/<name>-<version>/, CGO off, -trimpath, stripped, at nice 19 and OPERATORS_GOFLAGS (-p=1).
#
#   prometheus-operator  wrapper module prometheus-operator/ (the upstream go.mod's ./pkg/... replaces
#                        turned to the published modules of the same version): operator and
#                        prometheus-config-reloader, the two images kube-prometheus-stack runs
#   prometheus           github.com/prometheus/prometheus (Prometheus 3.x is tagged v0.3XX.Y there) built
#                        in its own module directory (GOWORK=off: its go.work names directories the
#                        module zip lacks), so its go.mod, go.sum and replace directives decide
#                        (`go install pkg@version` refuses a module with replace directives): prometheus and
#                        promtool, without the web UI's compiled assets (tag builtinassets needs npm): the
#                        API, rules, targets and /graph's JSON work, the React pages do not
#   keda                 github.com/kedacore/keda/v2, likewise in its own module directory (its replace
#                        block pins k8s.io to 0.35.x): keda (operator), keda-adapter (metrics API server),
#                        keda-admission-webhooks, the names its Makefile and Dockerfiles give them
# Prometheus' version: 3.13.2, the image kube-prometheus-stack 88.2.0 runs (prometheus.prometheusSpec.image
# .tag v3.13.2-distroless) and of the 3.13 line that prometheus-operator v0.93.0 supports (its
# PrometheusCompatibilityMatrix ends at v3.13.1, its default).

# shellcheck disable=SC2154  # here: set by build.sh, which sources this file
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v3.13.2}"

go_version_of() {
  case "$1" in
    prometheus-operator) echo "$PROMETHEUS_OPERATOR_VERSION" ;;
    prometheus) echo "$PROMETHEUS_VERSION" ;;
    keda) echo "$KEDA_VERSION" ;;
  esac
}

go_dir() { echo "$(cache_root)/$1-$(go_version_of "$1")"; }

# go_build DIR TARGET PKG LDFLAGS: in module DIR, build PKG to TARGET unless it is there
go_build() {
  local dir="$1" target="$2" pkg="$3" ldflags="$4" start=$SECONDS
  if [[ -x "$target" ]]; then
    echo "operators: $(basename "$target") cached ($target)"
    return
  fi
  mkdir -p "$(dirname "$target")"
  (cd "$dir" && GOWORK=off GOFLAGS="${OPERATORS_GOFLAGS:--p=1} -mod=readonly -buildvcs=false" CGO_ENABLED=0 \
    niced go build -trimpath -ldflags "-s -w $ldflags" -o "$target.tmp.$$" "$pkg")
  mv -f "$target.tmp.$$" "$target"
  echo "operators: built $(basename "$target") in $((SECONDS - start))s," \
    "$(du -m "$target" | cut -f1) MB -> $target"
}

# prometheus/common's version variables, as the upstream Makefiles set them
common_version() {
  local p=github.com/prometheus/common/version
  echo "-X $p.Version=${1#v} -X $p.Revision=${2:-unknown} -X $p.Branch=HEAD -X $p.BuildUser=login-stream" \
    "-X $p.BuildDate=19700101-00:00:00"
}

build_go() {
  local name="$1" out dir
  out="$(go_dir "$name")"
  case "$name" in
    prometheus-operator)
      dir="$here/prometheus-operator"
      local pkg=github.com/prometheus-operator/prometheus-operator/cmd
      go_build "$dir" "$out/operator" "$pkg/operator" "$(common_version "$PROMETHEUS_OPERATOR_VERSION")"
      go_build "$dir" "$out/prometheus-config-reloader" "$pkg/prometheus-config-reloader" \
        "$(common_version "$PROMETHEUS_OPERATOR_VERSION")"
      ;;
    prometheus)
      dir="$(module_dir "github.com/prometheus/prometheus@$(prometheus_module_version)")"
      go_build "$dir" "$out/prometheus" ./cmd/prometheus "$(common_version "$PROMETHEUS_VERSION")"
      go_build "$dir" "$out/promtool" ./cmd/promtool "$(common_version "$PROMETHEUS_VERSION")"
      # what the image's /etc/prometheus holds (the operator mounts its own configuration over it)
      [[ -f "$out/prometheus.yml" ]] || cp "$dir/documentation/examples/prometheus.yml" "$out/prometheus.yml"
      chmod 0644 "$out/prometheus.yml"
      ;;
    keda)
      dir="$(module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")"
      local ldflags="-X github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION#v}"
      ldflags+=" -X github.com/kedacore/keda/v2/version.GitCommit=$KEDA_VERSION"
      go_build "$dir" "$out/keda" ./cmd/operator "$ldflags"
      go_build "$dir" "$out/keda-adapter" ./cmd/adapter "$ldflags"
      go_build "$dir" "$out/keda-admission-webhooks" ./cmd/webhooks "$ldflags"
      ;;
  esac
}

# Prometheus v3.X.Y is the Go module version v0.(300+X).Y
prometheus_module_version() {
  local v="${PROMETHEUS_VERSION#v}"
  local major="${v%%.*}" rest="${v#*.}"
  local minor="${rest%%.*}" patch="${rest#*.}"
  echo "v0.$((major * 100 + minor)).$patch"
}
