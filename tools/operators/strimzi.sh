# shellcheck shell=bash
# Strimzi's images' contents, built from Strimzi's source at STRIMZI_VERSION (sourced by build.sh).
#
# Only io.strimzi:api, crd-annotations, crd-generator and metrics-reporter of Strimzi are on Maven Central,
# so the operator is built from the release's source tree:
#   STRIMZI_SOURCE            where that tree comes from: a URL (default: the release's tag archive on
#                             GitHub) or a local .tar.gz;
#   STRIMZI_SOURCE_FALLBACK   used when STRIMZI_SOURCE cannot be fetched (default:
#                             ../shared/upstream/strimzi-kafka-operator-<version>.tar.gz beside the checkout,
#                             for machines that reach no code host). Either layout (one top directory or
#                             none) is accepted; the tree must say release.version = STRIMZI_VERSION.
# The build is Strimzi's own Maven reactor (`make java_install` minus tests, checkstyle, spotbugs, jacoco
# and the dependency analysis), limited to the modules the two images carry and what they need, run with
# a JDK 21+ (maven.compiler.release 21) and mikefarah's yq (build-config-models.sh) built from its Go module.
#
# Output, per user: $(cache_root)/strimzi-<version>/
#   src/                          the unpacked tree and its build
#   operator/opt/strimzi/{bin,lib} what docker-images/operator/Dockerfile copies (scripts/ + the bin/ and
#                                 lib/ of the cluster-, topic-, user-operator and kafka-init -dist.zip files)
#   kafka-<kafka>/opt/kafka/      Strimzi's Kafka image's KAFKA_HOME: Kafka's jars from Maven Central
#                                 (tools/kafka/pom.xml), docker-images/kafka-based/kafka/scripts/, the
#                                 kafka-agent and tracing-agent jars, the third-party libraries the broker
#                                 configuration written by this operator loads (strimzi/kafka-libs/pom.xml),
#                                 and bin/ scripts of this project's own (Maven Central has no bin/)
# tools/operators/images/strimzi-{operator,kafka}.toml describe the images made of them.

# shellcheck disable=SC2154  # here, ROOT: set by build.sh, which sources this file
YQ_VERSION=v4.54.3   # mikefarah/yq: Strimzi's scripts need its `yq eval` (Debian's yq is another program)

strimzi_dir() { echo "$(cache_root)/strimzi-$STRIMZI_VERSION"; }

# strimzi_fetch DEST: the source tree, unpacked into DEST (a fresh directory)
strimzi_fetch() {
  local dest="$1" archive="$1.tar.gz" source="${STRIMZI_SOURCE:-}"
  local fallback="${STRIMZI_SOURCE_FALLBACK:-$ROOT/../shared/upstream/strimzi-kafka-operator-$STRIMZI_VERSION.tar.gz}"
  source="${source:-https://github.com/strimzi/strimzi-kafka-operator/archive/refs/tags/$STRIMZI_VERSION.tar.gz}"
  if [[ "$source" == http*://* ]]; then
    if curl -fsSL --connect-timeout 10 --max-time 600 -o "$archive" "$source"; then
      echo "strimzi: source $source"
    elif [[ -f "$fallback" ]]; then
      echo "strimzi: $source could not be fetched; using the local copy $fallback (STRIMZI_SOURCE_FALLBACK)"
      cp "$fallback" "$archive"
    else
      echo "strimzi: cannot fetch $source and no $fallback: set STRIMZI_SOURCE to a copy of Strimzi" \
        "$STRIMZI_VERSION's source (.tar.gz)" >&2
      return 1
    fi
  else
    [[ -f "$source" ]] || { echo "strimzi: STRIMZI_SOURCE=$source: no such file" >&2; return 1; }
    cp "$source" "$archive"
  fi
  mkdir -p "$dest"
  tar -xzf "$archive" -C "$dest"
  rm -f "$archive"
  # a tag archive has one top directory; the local copy has none
  if [[ ! -f "$dest/pom.xml" ]]; then
    local top
    top="$(find "$dest" -mindepth 1 -maxdepth 1 -type d)"
    [[ $(wc -l <<<"$top") == 1 && -f "$top/pom.xml" ]] || { echo "strimzi: no pom.xml in $source" >&2; return 1; }
    (shopt -s dotglob && mv "$top"/* "$dest"/ && rmdir "$top")
  fi
  local found
  found="$(cat "$dest/release.version" 2>/dev/null || true)"
  [[ "$found" == "$STRIMZI_VERSION" ]] || {
    echo "strimzi: $source holds release $found, not $STRIMZI_VERSION" >&2
    return 1
  }
}

# yq_bin: mikefarah's yq, built once per user from its Go module
yq_bin() {
  local dir
  dir="$(cache_root)/yq-$YQ_VERSION"
  if [[ ! -x "$dir/yq" ]]; then
    mkdir -p "$dir"
    (cd "$dir" && GOFLAGS="-p=1" GOBIN="$dir" CGO_ENABLED=0 niced go install -trimpath -ldflags "-s -w" \
      "github.com/mikefarah/yq/v4@$YQ_VERSION") >&2
  fi
  echo "$dir/yq"
}

# The Maven reactor build, into src/*/target. Logs to src/build.log.
strimzi_maven() {
  local src="$1" java yq jdk
  java="$(find_java 21)"
  jdk="$(dirname "$(dirname "$(readlink -f "$java")")")"
  yq="$(yq_bin)"
  local skip=(-Dmaven.test.skip=true -DskipTests -Dcheckstyle.skip=true -Dspotbugs.skip=true -Djacoco.skip=true
    -Dmdep.analyze.skip=true -Dmaven.javadoc.skip=true -Dmaven.source.skip=true)
  # javac 23+ runs no annotation processor found on the class path unless told to (JDK-8321314), and the
  # api module's builders (sundrio) and Lombok's code come from such processors: without -proc:full,
  # Strimzi's CRD generator stops with "... is not annotated with @Buildable (...Builder does not exist)".
  # Strimzi's compiler plugin (3.10.1) has no property for it and the api module overrides compilerArgs,
  # so javac is forked and reads it from JDK_JAVAC_OPTIONS (the javac launcher's environment variable).
  # Strimzi 1.2.0 pins Lombok 1.18.32, which knows javac up to 22; 1.18.42 (Maven Central) knows 25.
  local javac_options=""
  if [[ "$(java_major "$java")" -ge 23 ]]; then
    skip+=(-Dmaven.compiler.fork=true -Dlombok.version=1.18.42)
    javac_options="-proc:full"
  fi
  # config-model-generator: its build-config-models.sh writes cluster-operator/src/main/resources/
  # kafka-<version>-config-model.json for each Kafka version (Strimzi's `make java_install` builds every
  # module; cluster-operator does not depend on it, so -am alone leaves it out and the operator then stops
  # at "Configuration model /kafka-4.3.1-config-model.json was not found"). The reactor builds it before
  # cluster-operator (the root pom's module order).
  local modules=kafka-agent,tracing-agent,kafka-init,config-model-generator,cluster-operator,topic-operator,user-operator
  # Maven resolves test-scoped dependencies even when tests are skipped (the compiler's testCompile and
  # surefire ask for them), and some are not on Maven Central (io.strimzi:strimzi-test-container) or are
  # test jars a skipped test build does not make: the modules' test dependencies are dropped from this
  # build's copy of the poms (tests are not built here)
  strimzi_drop_test_dependencies "$src"
  strimzi_openshift_client "$src"
  # build-config-models.sh runs a nested `mvn` in config-model-generator, which resolves io.strimzi's
  # parent pom and config-model from the local repository: install those two first
  (
    cd "$src"
    PATH="$jdk/bin:$(dirname "$yq"):$PATH"
    export JAVA_HOME="$jdk" PATH MVN_ARGS="-B ${skip[*]}" JDK_JAVAC_OPTIONS="$javac_options"
    niced mvn -B -T1 "${skip[@]}" -N install
    niced mvn -B -T1 "${skip[@]}" -pl config-model install
    # clean when the flags changed: classes an attempt compiled with other settings are not "up to date"
    local clean=clean flags="${skip[*]} $javac_options"
    if [[ -f .maven-flags && "$(cat .maven-flags)" == "$flags" ]]; then clean=""; fi
    echo "$flags" >.maven-flags
    niced mvn -B -T1 "${skip[@]}" -pl "$modules" -am $clean package
  ) >"$src/build.log" 2>&1 || {
    echo "strimzi: the Maven build failed; the end of $src/build.log:" >&2
    grep -E '^\[(ERROR|FATAL)\]' "$src/build.log" | head -n 30 >&2 || tail -n 30 "$src/build.log" >&2
    return 1
  }
}

# strimzi_drop_test_dependencies SRC: remove from the modules' poms every <dependency> of scope test,
# whether the module says so or the root pom's dependencyManagement does (io.strimzi:strimzi-test-container).
# A managed entry is matched on groupId, artifactId, type and classifier, not on the artifactId alone: the
# root pom manages io.strimzi:operator-common twice, as the compile dependency and as its test-jar
# (classifier tests, scope test), and only the second is test-only (matching on the artifactId dropped the
# compile dependency, and topic-operator then failed: "package io.strimzi.operator.common does not exist").
# Each pom's pristine copy is kept as pom.xml.orig and the edit always starts from it: the edit is the same
# on every run, and a changed rule applies to a tree an earlier run edited.
strimzi_drop_test_dependencies() {
  python3 - "$1" <<'PY'
import re, sys
from pathlib import Path

root = Path(sys.argv[1])
block = re.compile(r"[ \t]*<dependency>((?:(?!</dependency>).)*?)</dependency>[ \t]*\n?", re.S)


def tag(body: str, name: str, default: str = "") -> str:
    found = re.search(rf"<{name}>([^<]+)</{name}>", body)
    return found[1].strip() if found else default


def key(body: str) -> tuple[str, str, str, str]:
    return (tag(body, "groupId"), tag(body, "artifactId"), tag(body, "type", "jar"), tag(body, "classifier"))


managed = root.joinpath("pom.xml").read_text()
managed = managed[managed.find("<dependencyManagement>"):managed.find("</dependencyManagement>")]
test_only = {key(m[1]) for m in block.finditer(managed) if "<scope>test</scope>" in m[1]}


def keep(match: re.Match[str]) -> str:
    body = match[1]
    if "<scope>test</scope>" in body:
        return ""
    if "<scope>" not in body and key(body) in test_only:
        return ""
    return match[0]


for pom in root.glob("*/pom.xml"):
    orig = pom.with_name("pom.xml.orig")
    if not orig.exists():
        orig.write_text(pom.read_text())
    pom.write_text(block.sub(keep, orig.read_text()))
PY
}

# strimzi_openshift_client SRC: Strimzi 1.2.0 pins fabric8's openshift-client-api and openshift-model at
# 7.8.0 (through fabric8.kubernetes-client.version and fabric8.kubernetes-model.version, in the root pom's
# dependencyManagement), which Maven Central does not serve (404; its newest is 7.7.0), while the
# kubernetes-client 7.8.0 of the same properties is there. The cluster operator uses the OpenShift client
# only on OpenShift (Routes, BuildConfigs, ImageStreams). STRIMZI_OPENSHIFT_CLIENT (default 7.7.0; empty
# keeps Strimzi's pins) sets fabric8.openshift-client.version and both entries follow it. Edits the root
# pom from its pristine copy (pom.xml.orig), as strimzi_drop_test_dependencies does the modules'.
strimzi_openshift_client() {
  python3 - "$1" "${STRIMZI_OPENSHIFT_CLIENT-7.7.0}" <<'PY'
import re, sys
from pathlib import Path

pom, version = Path(sys.argv[1]) / "pom.xml", sys.argv[2]
orig = pom.with_name("pom.xml.orig")
if not orig.exists():
    orig.write_text(pom.read_text())
text = orig.read_text()
if version:
    text = re.sub(r"<fabric8\.openshift-client\.version>[^<]*<", f"<fabric8.openshift-client.version>{version}<", text)
    for artifact in ("openshift-client-api", "openshift-model"):
        text = re.sub(
            rf"(<artifactId>{artifact}</artifactId>\s*<version>)\$\{{[^}}]+\}}",
            r"\g<1>${fabric8.openshift-client.version}",
            text,
        )
pom.write_text(text)
PY
}

# strimzi_operator_root SRC OUT: OUT/opt/strimzi as docker-images/operator/Makefile + Dockerfile lay it out
strimzi_operator_root() {
  local src="$1" out="$2" zip tmp
  local home="$out/opt/strimzi"
  tmp="$(mktemp -d)"
  # the modules' assembly writes each -dist.zip to docker-images/artifacts/binaries/ (their poms'
  # make-dist-assembly outputDirectory), where docker-images/operator/Makefile takes them from
  for zip in cluster-operator topic-operator user-operator kafka-init; do
    unzip -qo "$src/docker-images/artifacts/binaries/$zip-$STRIMZI_VERSION-dist.zip" -d "$tmp"
  done
  mkdir -p "$home/bin" "$home/lib"
  cp -a "$src/docker-images/operator/scripts/." "$home/bin/"
  cp -a "$tmp/bin/." "$home/bin/"
  cp -a "$tmp/lib/." "$home/lib/"
  rm -rf "$tmp"
  chmod 0755 "$home/bin"/*.sh
}

# strimzi_kafka_root SRC OUT: OUT/opt/kafka (KAFKA_HOME of Strimzi's Kafka image)
strimzi_kafka_root() {
  local src="$1" out="$2" java jdk
  local home="$out/opt/kafka"
  mkdir -p "$home/libs" "$home/plugins" "$home/bin"
  # Kafka's runtime jars, as the local broker assembles them (tools/kafka/pom.xml), Strimzi's reporter
  # included; then the libraries Strimzi's broker configuration loads (strimzi/kafka-libs/pom.xml)
  niced mvn -q -B -Dstyle.color=never -f "$ROOT/tools/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$home/libs"
  niced mvn -q -B -Dstyle.color=never -f "$here/strimzi/kafka-libs/pom.xml" \
    dependency:copy-dependencies -DoutputDirectory="$home/libs"
  cp "$src/kafka-agent/target/kafka-agent-$STRIMZI_VERSION.jar" "$src/tracing-agent/target/tracing-agent-$STRIMZI_VERSION.jar" \
    "$home/libs/"
  # the class names Strimzi 1.2's broker configuration names for its metrics reporter (0.4.0's), over the
  # 0.2.0 reporter Maven Central serves: strimzi/reporter-names/
  java="$(find_java 21)"
  jdk="$(dirname "$(dirname "$(readlink -f "$java")")")"
  local classes
  classes="$(mktemp -d)"
  niced "$jdk/bin/javac" --release 17 -nowarn -d "$classes" -cp "$home/libs/*" \
    "$here"/strimzi/reporter-names/io/strimzi/kafka/metrics/prometheus/*.java
  "$jdk/bin/jar" --create --file "$home/libs/login-stream-reporter-names.jar" -C "$classes" .
  rm -rf "$classes"
  # Strimzi's scripts (COPY ./scripts/ $KAFKA_HOME), and bin/ of our own (kafka-server-start.sh, ...)
  cp -a "$src/docker-images/kafka-based/kafka/scripts/." "$home/"
  cp -a "$here/strimzi/kafka-bin/." "$home/bin/"
  chmod 0755 "$home"/*.sh "$home/bin"/*.sh
}

build_strimzi() {
  local dir start=$SECONDS
  dir="$(strimzi_dir)"
  local operator="$dir/operator" kafka="$dir/kafka-$KAFKA_VERSION"
  if [[ -d "$operator/opt/strimzi/lib" && -d "$kafka/opt/kafka/libs" ]]; then
    echo "strimzi: $STRIMZI_VERSION cached ($dir)"
    return
  fi
  mkdir -p "$dir"
  if [[ ! -f "$dir/src/.built" ]]; then
    # an unpacked tree is kept: a failed build resumes from it (and from Maven's target/ directories).
    # .unpacked-2: a tree unpacked before the poms' pristine copies were kept (.unpacked) is unpacked again
    if [[ ! -f "$dir/src/.unpacked-2" ]]; then
      rm -rf "$dir/src"
      strimzi_fetch "$dir/src"
      touch "$dir/src/.unpacked-2"
    fi
    strimzi_maven "$dir/src"
    touch "$dir/src/.built"
    echo "strimzi: Maven build of $STRIMZI_VERSION in $((SECONDS - start))s"
  fi
  rm -rf "$operator.tmp" "$kafka.tmp"
  strimzi_operator_root "$dir/src" "$operator.tmp"
  strimzi_kafka_root "$dir/src" "$kafka.tmp"
  rm -rf "$operator" "$kafka"
  mv "$operator.tmp" "$operator"
  mv "$kafka.tmp" "$kafka"
  echo "strimzi: operator $(du -sh "$operator" | cut -f1), kafka $KAFKA_VERSION $(du -sh "$kafka" | cut -f1)" \
    "in $((SECONDS - start))s -> $dir"
}
