##@ Kubernetes (kind cluster; docs/kubernetes.md)
# Kubernetes: kind cluster with Strimzi and kube-prometheus-stack, the login-stream chart, Tilt, e2e.
# docs/kubernetes.md walks through them. Needs docker (or podman), kubectl and, for `make up`, tilt;
# helm and kind come from `make tools` (used from PATH when supported).

KIND_CLUSTER   ?= login-stream
KUBE_CONTEXT   ?= kind-$(KIND_CLUSTER)
APP_NS         ?= login-stream
MONITORING_NS  ?= monitoring
STRIMZI_NS     ?= strimzi
KEDA_NS        ?= keda
KAFKA_CLUSTER  ?= login-stream
RELEASE        ?= login-stream
IMAGE_TAG      ?= dev
# Tilt's own port-forwards (Tiltfile) hold 3000 (Grafana), 9090 (Prometheus), 9000 (Kafdrop), 8000 and
# 8001: `make grafana` and `make k8s-monitor` use other ports so that they work while `make up` runs.
GRAFANA_PORT   ?= 3001
KAFDROP_PORT   ?= 9001
KUBECTL        ?= kubectl
HELM           ?= helm
DOCKER         ?= docker
E2E_CONTEXT    ?= $(KUBE_CONTEXT)

# kind talks to Docker unless KIND_EXPERIMENTAL_PROVIDER names another engine (kind's
# pkg/cluster/provider.go); its `load docker-image` always runs `docker save`, so images travel as an
# archive ($(DOCKER) save + kind load image-archive). Podman names a local build localhost/<name>: the
# images get their full docker.io/library/ name, which is what the pods' short names resolve to.
ifeq ($(notdir $(DOCKER)),podman)
KIND         ?= KIND_EXPERIMENTAL_PROVIDER=podman kind
IMAGE_PREFIX ?= docker.io/library/
else
KIND         ?= kind
IMAGE_PREFIX ?=
endif
IMAGES_TAR   ?= .cache/images-$(IMAGE_TAG).tar

# Upstream charts, pinned (the same versions as the CRDs of `make crds`, tools/operators/versions).
STRIMZI_CHART   ?= oci://quay.io/strimzi-helm/strimzi-kafka-operator
STRIMZI_VERSION ?= 1.2.0
PROM_CHARTS     ?= https://prometheus-community.github.io/helm-charts
KPS_VERSION     ?= 88.2.0
KEDA_CHARTS     ?= https://kedacore.github.io/charts
KEDA_VERSION    ?= 2.20.2
CRD_OUT         ?= .cache/crds

K  := $(KUBECTL) --context $(KUBE_CONTEXT)
HC := $(HELM) --kube-context $(KUBE_CONTEXT)

define need
@command -v $(1) >/dev/null 2>&1 || { echo "$(1) not found: $(2)" >&2; exit 1; }
endef

# What `make tools` provides for each target (inherited by its prerequisites): only what it runs, so a
# cluster needs no kubeconform/actionlint and, with helm, kind and kubectl installed, no Go.
cluster kind-load deploy: TOOLS = helm kind kubectl
keda helm-test k8s-stop: TOOLS = helm kubectl

# Refusals before any work, with the messages README.md promises (tests/readme/cluster.py checks them):
# `make cluster` (and `make up`) needs a Docker daemon for kind's node container; the targets that work on
# a running cluster need one that answers at KUBE_CONTEXT.
.PHONY: docker-answers cluster-answers
docker-answers:
	@$(DOCKER) info >/dev/null 2>&1 || { \
	  echo "make $(MAKECMDGOALS): no Docker daemon answers (\`$(DOCKER) info\` fails): kind runs its node in a container; start Docker (or set DOCKER=podman)" >&2; \
	  exit 1; }

cluster-answers:
	$(call need,$(KUBECTL),install kubectl (kubernetes.io/docs/tasks/tools))
	@$(K) version --request-timeout=5s >/dev/null 2>&1 || { \
	  echo "make $(MAKECMDGOALS): no Kubernetes cluster answers at context $(KUBE_CONTEXT): \`make cluster\` creates the kind cluster (KUBE_CONTEXT names another)" >&2; \
	  exit 1; }

.PHONY: cluster
cluster: docker-answers tools ## Create the kind cluster: Strimzi, kube-prometheus-stack, Kafka, topics; waits until Ready (idempotent)
	$(call need,$(DOCKER),kind runs its node in a container: install Docker (or set DOCKER=podman))
	$(call need,$(KUBECTL),install kubectl (kubernetes.io/docs/tasks/tools))
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "== kind cluster $(KIND_CLUSTER) exists"; $(KIND) export kubeconfig --name $(KIND_CLUSTER); \
	else \
	  echo "== creating kind cluster $(KIND_CLUSTER)"; \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --config k8s/kind-config.yaml --wait 180s; \
	fi
	$(K) apply -f k8s/namespaces.yaml
	@echo "== Strimzi $(STRIMZI_VERSION) (watching $(APP_NS))"
	$(HC) upgrade --install strimzi-cluster-operator $(STRIMZI_CHART) --version $(STRIMZI_VERSION) \
	  --namespace $(STRIMZI_NS) --values k8s/values/strimzi-operator.yaml --wait --timeout 10m
	@echo "== kube-prometheus-stack $(KPS_VERSION)"
	$(HC) upgrade --install kube-prometheus-stack kube-prometheus-stack --repo $(PROM_CHARTS) \
	  --version $(KPS_VERSION) --namespace $(MONITORING_NS) --values k8s/values/kube-prometheus-stack.yaml \
	  --wait --timeout 15m
	@echo "== Kafka $(KAFKA_CLUSTER), topics, PodMonitors"
	$(K) apply -f k8s/kafka/ -f k8s/monitoring/
	$(K) -n $(APP_NS) wait kafka/$(KAFKA_CLUSTER) --for=condition=Ready --timeout=15m
	$(K) -n $(APP_NS) wait kafkatopic --all --for=condition=Ready --timeout=5m
	@echo "== cluster ready: next \`make deploy\` (or \`make up\` for Tilt)"

# The production Kafka (k8s/kafka/production: 3 brokers from one value, 3 controllers, RF 3, min ISR 2,
# rack awareness): kustomize renders it from the dev loop's files one folder up (docs/failover.md).
.PHONY: kafka-production
kafka-production: ## Print the production Kafka manifests (3 brokers): `make -s kafka-production | kubectl apply -f -`
	$(call need,$(KUBECTL),install kubectl (kubernetes.io/docs/tasks/tools) or run `make tools`)
	@$(KUBECTL) kustomize --load-restrictor=LoadRestrictionsNone k8s/kafka/production

.PHONY: cluster-down
cluster-down: TOOLS = kind
cluster-down: docker-answers tools ## Delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)

.PHONY: keda
keda: cluster-answers tools ## Install KEDA (optional; then deploy with --set keda.enabled=true)
	$(HC) upgrade --install keda keda --repo $(KEDA_CHARTS) --version $(KEDA_VERSION) \
	  --namespace $(KEDA_NS) --create-namespace --values k8s/values/keda.yaml --wait --timeout 10m

.PHONY: images
images: ## Build the login-producer and login-consumer images (tag IMAGE_TAG=dev)
	$(call need,$(DOCKER),install Docker to build the images)
	$(DOCKER) build -t $(IMAGE_PREFIX)login-producer:$(IMAGE_TAG) -f services/Dockerfile \
	  --build-arg SERVICE=producer --target producer .
	$(DOCKER) build -t $(IMAGE_PREFIX)login-consumer:$(IMAGE_TAG) -f services/Dockerfile \
	  --build-arg SERVICE=consumer --target consumer .

.PHONY: kind-load
kind-load: cluster-answers tools images ## Build the images and load them into the kind cluster
	@mkdir -p $(dir $(IMAGES_TAR))
	$(DOCKER) save -o $(IMAGES_TAR) $(IMAGE_PREFIX)login-producer:$(IMAGE_TAG) $(IMAGE_PREFIX)login-consumer:$(IMAGE_TAG)
	$(KIND) load image-archive $(IMAGES_TAR) --name $(KIND_CLUSTER)
	@rm -f $(IMAGES_TAR)

.PHONY: deploy
deploy: cluster-answers tools kind-load ## helm upgrade --install the chart on the kind cluster (images built and loaded first)
	$(HC) upgrade --install $(RELEASE) charts/login-stream --namespace $(APP_NS) \
	  --values k8s/values/login-stream.yaml --set image.tag=$(IMAGE_TAG) $(HELM_ARGS) --wait --timeout 5m
	$(HC) status $(RELEASE) --namespace $(APP_NS) --show-resources | head -n 40

.PHONY: helm-test
helm-test: cluster-answers tools ## Run the chart's `helm test` (marked events through the pipeline)
	$(HC) test $(RELEASE) --namespace $(APP_NS) --logs

.PHONY: up
up: cluster ## Tilt dev loop: build, live-update, deploy, port-forward (Ctrl-C, then `make k8s-stop`)
	$(call need,tilt,install Tilt (docs.tilt.dev/install.html))
	tilt up --context $(KUBE_CONTEXT)

.PHONY: k8s-stop
k8s-stop: cluster-answers tools ## Remove the app (Tilt resources or the helm release); Kafka and monitoring stay
	-@command -v tilt >/dev/null 2>&1 && tilt down --context $(KUBE_CONTEXT) || true
	-$(HC) uninstall $(RELEASE) --namespace $(APP_NS) --ignore-not-found
	-$(K) -n $(APP_NS) delete -f k8s/ui/kafdrop.yaml --ignore-not-found

.PHONY: k8s-clean
k8s-clean: cluster-down ## Delete the cluster and the downloaded CRDs
	rm -rf $(CRD_OUT) .tilt-dev

.PHONY: grafana
grafana: cluster-answers ## Port-forward Grafana to localhost:3001 (GRAFANA_PORT) and print how to read the admin password
	@echo "Grafana: http://localhost:$(GRAFANA_PORT)  user: admin"
	@echo "password: $(KUBECTL) --context $(KUBE_CONTEXT) -n $(MONITORING_NS) get secret kube-prometheus-stack-grafana -o jsonpath='{.data.admin-password}' | base64 -d; echo"
	@printf 'which is: '; $(K) -n $(MONITORING_NS) get secret kube-prometheus-stack-grafana \
	  -o jsonpath='{.data.admin-password}' | base64 -d; echo
	$(K) -n $(MONITORING_NS) port-forward svc/kube-prometheus-stack-grafana $(GRAFANA_PORT):80

.PHONY: k8s-monitor
k8s-monitor: cluster-answers ## Deploy Kafdrop (Kafka web UI) if needed and port-forward it to localhost:9001 (KAFDROP_PORT)
	$(K) apply -f k8s/ui/kafdrop.yaml
	$(K) -n $(APP_NS) rollout status deployment/kafdrop --timeout=3m
	@echo "Kafdrop: http://localhost:$(KAFDROP_PORT)"
	$(K) -n $(APP_NS) port-forward svc/kafdrop $(KAFDROP_PORT):9000

# The release's pods: Strimzi's pods carry app.kubernetes.io/instance=<Kafka name> (= the release's name)
# too, but never the chart's part-of.
RELEASE_PODS := app.kubernetes.io/instance=$(RELEASE),app.kubernetes.io/part-of=login-stream

.PHONY: k8s-logs
k8s-logs: cluster-answers ## Follow the logs of every pod of the release
	$(K) -n $(APP_NS) logs -l $(RELEASE_PODS) --all-containers --prefix -f --max-log-requests 12

.PHONY: k8s-health
k8s-health: cluster-answers ## Kafka, topics, deployments and the services' /ready, through the API server
	$(K) -n $(APP_NS) get kafka,kafkanodepool,kafkatopic
	$(K) -n $(APP_NS) get deployments,pods -l $(RELEASE_PODS)
	@for svc in consumer:8000 producer:8001; do \
	  name=$(RELEASE)-$${svc%%:*}; printf '%s /ready: ' "$$name"; \
	  $(K) get --raw "/api/v1/namespaces/$(APP_NS)/services/$$name:$${svc##*:}/proxy/ready" || exit 1; \
	done

.PHONY: e2e
e2e: init ## End-to-end tests against the kind cluster's context (E2E_CONTEXT; stops with a reason when none answers)
	E2E_CONTEXT=$(E2E_CONTEXT) $(BIN)/pytest tests/e2e $(PYTEST_ARGS)

# `make crds`: package registries only (no chart repository, no ../shared): Strimzi's CRDs generated by
# io.strimzi:crd-generator from io.strimzi:api (Maven Central, Java 21+), prometheus-operator's and KEDA's
# from their Go modules; versions in tools/operators/versions. Generated once per user
# (~/.cache/login-stream/crds-*), then only linked into $(CRD_OUT). `make setup` runs it.
.PHONY: crds
crds: ## Generate/fetch the Strimzi, prometheus-operator and KEDA CRDs (pinned; cached per user) into .cache/crds
	@bash tools/crds/build.sh $(CRD_OUT)

.PHONY: k8s-check
k8s-check: TOOLS = helm kubeconform actionlint
k8s-check: init tools ## Offline checks: helm lint/template, schemas + CRDs, chart units, Tiltfile, kind config, workflow
	$(BIN)/pytest tests/chart $(PYTEST_ARGS)
