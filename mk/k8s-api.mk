##@ Kubernetes API (a local control plane for tests/control_plane; docs/kubernetes.md)
# A real Kubernetes control plane on 127.0.0.1 (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok fake nodes) for tests/control_plane/. login_devtools/k8s_api.py runs it; tools/k8s/ builds it
# (versions in tools/k8s/versions). docs/kubernetes.md: what it proves and what only a real cluster does.
# K8S_API_PORT defaults to KAFKA_PORT + 10, so each worktree with its own Kafka port gets its own.

K8S_API          := $(call devtool,k8s_api)
# Seconds `make test` lets a first build take before it goes on without the tier (the next run resumes
# from Go's build cache); 0 = no limit. An explicit `make k8s-api-build` never gives up.
K8S_BUILD_BUDGET ?= 2400

.PHONY: k8s-api-build
k8s-api-build: ## Build etcd, kube-apiserver, -controller-manager, -scheduler and kwok once (cached per user)
	$(K8S_API) build

# `make test`'s prerequisite: the binaries within K8S_BUILD_BUDGET seconds, or a note and no failure
# (tests/control_plane then skips naming the reason). A build error still fails.
.PHONY: k8s-api-prepare
k8s-api-prepare:
	@$(K8S_API) build $(if $(filter-out 0,$(K8S_BUILD_BUDGET)),--timeout $(K8S_BUILD_BUDGET)); rc=$$?; \
	if [ $$rc -eq 124 ]; then echo "k8s-api: build not finished within $(K8S_BUILD_BUDGET)s: tests/control_plane will skip (run make k8s-api-build)"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

# `make test` builds (or only links) the binaries first (after `make setup`, which brings helm); tests/control_plane
# starts the control plane itself and stops it at the end of the session.
test-prereqs: k8s-api-prepare

.PHONY: k8s-api-up
k8s-api-up: ## Start the local control plane (builds first if needed); prints the KUBECONFIG to use
	$(K8S_API) up

.PHONY: k8s-api-down
k8s-api-down: ## Stop the local control plane (K8S_API_PURGE=1 also deletes its etcd data)
	$(K8S_API) down $(if $(K8S_API_PURGE),--purge)

.PHONY: k8s-api-status
k8s-api-status: ## Show the control plane's processes, addresses, log files and kubeconfig
	@$(K8S_API) status || true

.PHONY: test-k8s-api
test-k8s-api: init tools k8s-api-prepare ## The control-plane tier alone: helm install/upgrade/rollback/uninstall, API checks
	$(BIN)/pytest tests/control_plane $(PYTEST_ARGS)
