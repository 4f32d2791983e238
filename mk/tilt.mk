##@ Tilt on the local node (docs/tilt.md)
# Tilt built from its Go module (tools/tilt/build.sh, pinned in tools/tilt/versions) once per user into
# ~/.cache/login-stream/tilt-<version>/, niced; without its web UI (docs/tilt.md, "Building Tilt").
# The Tiltfile's node mode (LOGIN_STREAM_CLUSTER=node): images by the daemon-free builder through
# custom_build (tilt-node-image below), the chart with k8s/values/local-node/login-stream.yaml, on the node
# of `make k8s-node-up k8s-node-operators` (its kubeconfig: NODE_KUBECONFIG). Tilt's web/API port:
# TILT_PORT (Tilt's default 10350; two Tilt sessions on one machine need two ports).
TILT_BIN     = $(shell bash tools/tilt/build.sh --print-path)
TILT_PORT    ?= 10350
TILT_TIMEOUT ?= 30m
TILT_NODE    = KUBECONFIG=$(abspath $(NODE_KUBECONFIG)) LOGIN_STREAM_CLUSTER=node $(TILT_BIN)
TILT_IMAGES_DIR ?= $(IMAGES_DIR)/tilt

.PHONY: tilt
tilt: ## Build Tilt from its Go module once per user (first time: many minutes; then cached)
	@bash tools/tilt/build.sh >/dev/null

# Tilt's custom_build runs this with EXPECTED_REF (localhost/login-<service>:tilt-build-<time>), from the
# checkout: the `dev` target packed as an OCI archive, then imported into the node's containerd.
.PHONY: tilt-node-image
tilt-node-image: ## (Tilt's custom_build, node mode) Build TILT_SERVICE's dev image as $EXPECTED_REF and import it into the node
	@test -n "$$EXPECTED_REF" || { echo "make $@: EXPECTED_REF is not set (Tilt's custom_build sets it)" >&2; exit 2; }
	@case "$(TILT_SERVICE)" in producer|consumer) ;; \
	  *) echo "make $@: TILT_SERVICE='$(TILT_SERVICE)': producer or consumer" >&2; exit 2;; esac
	@mkdir -p $(TILT_IMAGES_DIR)
	$(IMAGE_BUILDER) build --dockerfile services/Dockerfile --target dev --build-arg SERVICE=$(TILT_SERVICE) \
	  --name "$$EXPECTED_REF" --output $(TILT_IMAGES_DIR)/login-$(TILT_SERVICE).tar
	$(IMAGE_BUILDER) import --address $(CONTAINERD_ADDRESS) --namespace $(CONTAINERD_NAMESPACE) \
	  $(TILT_IMAGES_DIR)/login-$(TILT_SERVICE).tar

# The release is Tilt's while it runs: a helm release of the same name (make k8s-node-deploy) is removed
# first, or both would own the same objects. `make k8s-node-deploy` puts the helm release back.
define tilt_node_take_release
@test -f $(NODE_KUBECONFIG) || { echo "make $@: no node ($(NODE_KUBECONFIG) missing): make k8s-node-up first" >&2; exit 1; }
@if $(NODE_HELM) status $(RELEASE) --namespace $(APP_NS) >/dev/null 2>&1; then \
  echo "tilt: the helm release $(RELEASE) becomes Tilt's: uninstalling it (make k8s-node-deploy brings it back)"; \
  $(NODE_HELM) uninstall $(RELEASE) --namespace $(APP_NS) --wait; fi
endef

.PHONY: tilt-ci-node
tilt-ci-node: TOOLS = helm
tilt-ci-node: tilt tools ## On the local node: `tilt ci` (build, deploy, wait until both services are Ready); they keep running
	$(tilt_node_take_release)
	$(TILT_NODE) ci --port $(TILT_PORT) --timeout $(TILT_TIMEOUT)

.PHONY: up-node
up-node: TOOLS = helm
up-node: tilt tools ## On the local node: `tilt up`, the dev loop with live update (Ctrl-C, then `make tilt-down-node`)
	$(tilt_node_take_release)
	$(TILT_NODE) up --port $(TILT_PORT) --legacy

.PHONY: tilt-down-node
tilt-down-node: TOOLS = helm
tilt-down-node: tilt tools ## On the local node: remove what Tilt deployed (`tilt down`); Kafka and the operators stay
	$(TILT_NODE) down

# tests/chart/test_tilt_binary.py evaluates the Tiltfile with the Tilt built here: `make test` builds it
# first, within TILT_BUILD_BUDGET seconds (0 = no limit; cold here: 31 min on two shared cores), or notes
# that it goes on without it (that test then skips naming `make tilt`; the next run resumes from Go's
# build cache). A build error still fails. An explicit `make tilt` never gives up.
TILT_BUILD_BUDGET ?= 1200

.PHONY: tilt-prepare
tilt-prepare:
	@$(if $(filter-out 0,$(TILT_BUILD_BUDGET)),timeout $(TILT_BUILD_BUDGET)) bash tools/tilt/build.sh >/dev/null; rc=$$?; \
	if [ $$rc -eq 124 ]; then echo "tilt: build not finished within $(TILT_BUILD_BUDGET)s: tests/chart/test_tilt_binary.py will skip (run make tilt)"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

test-prereqs: tilt-prepare
