# shellcheck shell=bash
# Helpers shared by tools/crds/build.sh and tools/operators/*.sh (sourced, not run).
#   cache_root        the per-user cache: $LOGIN_STREAM_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/login-stream
#   build_lock NAME   one NAME build at a time per user (flock on the cache's .NAME.lock, fd 9); not
#                     tools/k8s's .build.lock, so a long Kubernetes build does not hold these up
#   find_java MIN     a java binary of major version >= MIN: $JAVA_HOME, PATH, then /usr/lib/jvm/*
#   niced CMD...      run CMD at the lowest CPU priority ($OPERATORS_NICE, default 19)

cache_root() {
  echo "${LOGIN_STREAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/login-stream}"
}

build_lock() {
  local cache
  cache="$(cache_root)"
  mkdir -p "$cache"
  exec 9>"$cache/.$1.lock"
  flock 9
}

java_major() {  # java_major JAVA -> 17, 21, 25, ... (empty when it does not run)
  "$1" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n 1
}

find_java() {
  local min="$1" candidate major
  for candidate in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    major="$(java_major "$candidate")"
    if [[ -n "$major" && "$major" -ge "$min" ]]; then
      echo "$candidate"
      return 0
    fi
  done
  echo "no Java $min+ found (JAVA_HOME, PATH, /usr/lib/jvm): install a JDK $min or newer" \
    "(Debian/Ubuntu: apt-get install openjdk-21-jdk-headless or newer; macOS: brew install openjdk@21)," \
    "or set JAVA_HOME to one" >&2
  return 1
}

niced() {
  nice -n "${OPERATORS_NICE:-19}" "$@"
}

module_dir() {  # module_dir PATH@VERSION -> the directory of that module's source in Go's module cache
  local dir
  # outside any module (cd /): only the module's zip is fetched, nothing is built, no replace applies
  dir="$(cd / && go mod download -json "$1" | grep '"Dir"' | cut -d'"' -f4)"
  [[ -n "$dir" && -d "$dir" ]] || { echo "go mod download $1 gave no directory" >&2; return 1; }
  echo "$dir"
}
