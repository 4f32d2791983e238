##@ Operators on the local node (docs/kubernetes.md, "Operators on the local node")
# What goes into the operators' images, built once per user (~/.cache/login-stream/<name>-<version>/;
# tools/operators/build.sh, versions in tools/operators/versions): Strimzi's cluster operator from its
# 1.2.0 source and Strimzi's Kafka image's files; prometheus-operator + config reloader and Prometheus;
# KEDA's operator, metrics API server and admission webhooks. All niced, Go one package at a time.
# STRIMZI_SOURCE: where Strimzi's source comes from (a URL or a .tar.gz; default its tag's archive);
# STRIMZI_SOURCE_FALLBACK: used when that cannot be fetched (default ../shared/upstream/... beside the
# checkout). The images (tools/operators/images/*.toml) are packed by the daemon-free builder of
# tools/images; the charts' values for them: k8s/values/local-node/.

OPERATORS ?= strimzi prometheus-operator prometheus keda
export STRIMZI_SOURCE STRIMZI_SOURCE_FALLBACK

# spec@part@image: tools/operators/images/<spec>.toml packs the <part> directory of
# `tools/operators/build.sh --print-dirs` as <image> (k8s/values/local-node/ names the same images)
OPERATOR_IMAGES := \
  strimzi-operator@strimzi-operator@localhost/strimzi/operator:1.2.0 \
  strimzi-kafka@strimzi-kafka@localhost/strimzi/kafka:1.2.0-kafka-4.3.1 \
  prometheus-operator@prometheus-operator@localhost/prometheus-operator/prometheus-operator:v0.93.0 \
  prometheus-config-reloader@prometheus-operator@localhost/prometheus-operator/prometheus-config-reloader:v0.93.0 \
  prometheus@prometheus@localhost/prometheus/prometheus:v3.13.2 \
  keda@keda@localhost/kedacore/keda:2.20.2 \
  keda-metrics-apiserver@keda@localhost/kedacore/keda-metrics-apiserver:2.20.2 \
  keda-admission-webhooks@keda@localhost/kedacore/keda-admission-webhooks:2.20.2

.PHONY: operators-build
operators-build: ## Build Strimzi, prometheus-operator, Prometheus and KEDA for the local node (OPERATORS=...; cached per user)
	@bash tools/operators/build.sh $(OPERATORS)

.PHONY: operators-dirs
operators-dirs: ## Where each built part lies (the image specs' contexts)
	@bash tools/operators/build.sh --print-dirs

# prints "spec directory image" per image
define operator_images_list
dirs="$$(bash tools/operators/build.sh --print-dirs)"; \
for entry in $(OPERATOR_IMAGES); do \
  spec=$${entry%%@*}; rest=$${entry#*@}; part=$${rest%%@*}; ref=$${rest#*@}; \
  dir=$$(sed -n "s|^$$part=||p" <<<"$$dirs"); \
  echo "tools/operators/images/$$spec.toml $$dir $$ref"; \
done
endef

.PHONY: operators-images-list
operators-images-list: ## The operators' images: spec, context directory, image name
	@$(operator_images_list)

# Packing and importing (the daemon-free builder of tools/images: root, debootstrap; the same variables as
# mk/images.mk): one OCI archive per image into $(OPERATOR_IMAGES_DIR), then `ctr images import` into the
# node's containerd. The Debian trixie base is debootstrapped once per user (the builder's cache).
IMAGE_BUILDER        ?= PYTHONPATH=$(CURDIR)/tools/images/src $(PYTHON) -m login_images
# CONTAINERD_ADDRESS, CONTAINERD_NAMESPACE: mk/images.mk's (the node's containerd)
OPERATOR_IMAGES_DIR  ?= .cache/images/operators

.PHONY: operators-images
operators-images: operators-build ## Pack the operators' images as OCI archives (OPERATOR_IMAGES_DIR; root + debootstrap)
	@mkdir -p $(OPERATOR_IMAGES_DIR)
	@{ $(operator_images_list); } | while read -r spec dir ref; do \
	  name=$$(basename $$spec .toml); \
	  $(IMAGE_BUILDER) build --spec $$spec --context $$dir --name $$ref \
	    --output $(OPERATOR_IMAGES_DIR)/$$name.tar || exit $$?; \
	done

.PHONY: operators-images-import
operators-images-import: operators-images ## Pack, then import the operators' images into the node's containerd (CONTAINERD_ADDRESS)
	$(IMAGE_BUILDER) import --address $(CONTAINERD_ADDRESS) --namespace $(CONTAINERD_NAMESPACE) \
	  $(OPERATOR_IMAGES_DIR)/*.tar

# The operators on the local node (make k8s-node-up first; docs/kubernetes.md, "Operators on the local
# node"). The kind path's charts, versions and values, plus k8s/values/local-node/ (the images above,
# never pulled; what is off and why). Charts: tools/operators/charts.sh pulls each from its repository
# once per user, else takes it from UPSTREAM_CHARTS (default ../shared/upstream beside the checkout).
# k8s-node-operators: Strimzi, kube-prometheus-stack, KEDA, then the Kafka CR + node pools, topics and
# PodMonitors of k8s/ until Kafka and its topics are Ready; k8s-node-deploy: the chart
# (k8s/values/login-stream.yaml + k8s/values/local-node/login-stream.yaml); e2e-node: `make e2e` there.
NODE_KUBECTL  := $(KUBECTL) --kubeconfig $(NODE_KUBECONFIG)
NODE_HELM     := $(HELM) --kubeconfig $(NODE_KUBECONFIG)
NODE_CONTEXT  ?= login-stream-k8s-api
CHART_ENV     := HELM="$(HELM)" STRIMZI_VERSION=$(STRIMZI_VERSION) STRIMZI_CHART=$(STRIMZI_CHART) \
  KPS_VERSION=$(KPS_VERSION) PROM_CHARTS=$(PROM_CHARTS) KEDA_CHART_VERSION=$(KEDA_VERSION) KEDA_CHARTS=$(KEDA_CHARTS)

.PHONY: k8s-node-operators
k8s-node-operators: TOOLS = helm
k8s-node-operators: tools ## On the local node: Strimzi, prometheus-operator + Prometheus, KEDA (built images), Kafka + topics Ready
	@test -f $(NODE_KUBECONFIG) || { echo "make $@: no node ($(NODE_KUBECONFIG) missing): make k8s-node-up first" >&2; exit 1; }
	$(NODE_KUBECTL) apply -f k8s/namespaces.yaml
	@echo "== Strimzi $(STRIMZI_VERSION) (watching $(APP_NS))"
	chart=$$($(CHART_ENV) bash tools/operators/charts.sh strimzi) && \
	$(NODE_HELM) upgrade --install strimzi-cluster-operator $$chart --namespace $(STRIMZI_NS) \
	  --values k8s/values/strimzi-operator.yaml --values k8s/values/local-node/strimzi-operator.yaml --wait --timeout 10m
	@echo "== kube-prometheus-stack $(KPS_VERSION) (prometheus-operator + Prometheus)"
	chart=$$($(CHART_ENV) bash tools/operators/charts.sh kube-prometheus-stack) && \
	$(NODE_HELM) upgrade --install kube-prometheus-stack $$chart --namespace $(MONITORING_NS) \
	  --values k8s/values/kube-prometheus-stack.yaml --values k8s/values/local-node/kube-prometheus-stack.yaml \
	  --wait --timeout 15m
	@echo "== KEDA $(KEDA_VERSION)"
	chart=$$($(CHART_ENV) bash tools/operators/charts.sh keda) && \
	$(NODE_HELM) upgrade --install keda $$chart --namespace $(KEDA_NS) --create-namespace \
	  --values k8s/values/keda.yaml --values k8s/values/local-node/keda.yaml --wait --timeout 10m
	@echo "== Kafka $(KAFKA_CLUSTER), topics, PodMonitors"
	$(NODE_KUBECTL) apply -f k8s/kafka/ -f k8s/monitoring/
	$(NODE_KUBECTL) -n $(APP_NS) wait kafka/$(KAFKA_CLUSTER) --for=condition=Ready --timeout=15m
	$(NODE_KUBECTL) -n $(APP_NS) wait kafkatopic --all --for=condition=Ready --timeout=5m

.PHONY: k8s-node-deploy
k8s-node-deploy: TOOLS = helm
k8s-node-deploy: tools ## On the local node: the chart against the Strimzi Kafka, KEDA on (images: make images-oci images-import)
	$(NODE_HELM) upgrade --install $(RELEASE) charts/login-stream --namespace $(APP_NS) \
	  --values k8s/values/login-stream.yaml --values k8s/values/local-node/login-stream.yaml $(HELM_ARGS) \
	  --wait --timeout 10m

# Security off (issue 18: KEDA "with security on and off"): a plaintext Kafka `login-stream-plain`
# (k8s/kafka/plaintext: k8s/kafka/ with one listener, no TLS, authentication or authorization) beside the
# secured one, in the namespace Strimzi watches, and the release $(PLAIN_RELEASE) against it
# (k8s/values/local-node/plaintext.yaml, KEDA on). tests/operators/test_security_off.py runs tests/e2e's
# KEDA and pipeline tests on it, then removes both (k8s-node-plaintext-down).
PLAIN_RELEASE ?= login-stream-plain
PLAIN_KAFKA   ?= login-stream-plain

.PHONY: kafka-plaintext
kafka-plaintext: ## Print the plaintext test Kafka (k8s/kafka/plaintext): `make -s kafka-plaintext`
	@$(KUBECTL) kustomize --load-restrictor=LoadRestrictionsNone k8s/kafka/plaintext

.PHONY: k8s-node-plaintext
k8s-node-plaintext: TOOLS = helm
k8s-node-plaintext: tools ## On the local node: a plaintext Kafka and the release login-stream-plain against it (security off)
	@test -f $(NODE_KUBECONFIG) || { echo "make $@: no node ($(NODE_KUBECONFIG) missing): make k8s-node-up first" >&2; exit 1; }
	$(KUBECTL) kustomize --load-restrictor=LoadRestrictionsNone k8s/kafka/plaintext | $(NODE_KUBECTL) apply -f -
	$(NODE_KUBECTL) -n $(APP_NS) wait kafka/$(PLAIN_KAFKA) --for=condition=Ready --timeout=15m
	$(NODE_KUBECTL) -n $(APP_NS) wait kafkatopic -l strimzi.io/cluster=$(PLAIN_KAFKA) --for=condition=Ready --timeout=5m
	$(NODE_HELM) upgrade --install $(PLAIN_RELEASE) charts/login-stream --namespace $(APP_NS) \
	  --values k8s/values/login-stream.yaml --values k8s/values/local-node/login-stream.yaml \
	  --values k8s/values/local-node/plaintext.yaml $(HELM_ARGS) --wait --timeout 10m

.PHONY: k8s-node-plaintext-down
k8s-node-plaintext-down: TOOLS = helm
k8s-node-plaintext-down: tools ## On the local node: remove the release login-stream-plain and the plaintext Kafka
	$(NODE_HELM) uninstall $(PLAIN_RELEASE) --namespace $(APP_NS) --ignore-not-found --wait --timeout 5m
	@# the KafkaTopics first, while their Kafka's topic operator runs to remove its finalizer
	$(NODE_KUBECTL) -n $(APP_NS) delete kafkatopic -l strimzi.io/cluster=$(PLAIN_KAFKA) --wait --timeout=5m
	$(KUBECTL) kustomize --load-restrictor=LoadRestrictionsNone k8s/kafka/plaintext | \
	  $(NODE_KUBECTL) delete --ignore-not-found --wait --timeout=5m -f -
	@# Strimzi deletes its claims (deleteClaim) once the pods are gone: then offer the volumes again
	$(NODE_KUBECTL) -n $(APP_NS) wait pvc -l strimzi.io/cluster=$(PLAIN_KAFKA) --for=delete --timeout=5m
	$(K8S_NODE) recycle

# Three brokers on the node (issue 23; docs/failover.md, "Strimzi"): k8s/kafka/node-ha, the production
# Kafka (three brokers from production/sizing.yaml's one value, three controllers, min ISR 2) sized down
# for the node, as Kafka `login-stream-ha` beside the dev loop's, and the release $(HA_RELEASE) against it
# (k8s/values/local-node/ha.yaml: exactly-once). tests/operators/test_three_brokers.py deletes a broker
# pod under load there, then removes both (k8s-node-ha-down).
HA_RELEASE ?= login-stream-ha
HA_KAFKA   ?= login-stream-ha

.PHONY: kafka-node-ha
kafka-node-ha: ## Print the node's three-broker test Kafka (k8s/kafka/node-ha): `make -s kafka-node-ha`
	@$(KUBECTL) kustomize --load-restrictor=LoadRestrictionsNone k8s/kafka/node-ha

.PHONY: k8s-node-ha
k8s-node-ha: TOOLS = helm
k8s-node-ha: tools ## On the local node: a three-broker Kafka (min ISR 2) and the release login-stream-ha (exactly-once)
	@test -f $(NODE_KUBECONFIG) || { echo "make $@: no node ($(NODE_KUBECONFIG) missing): make k8s-node-up first" >&2; exit 1; }
	$(KUBECTL) kustomize --load-restrictor=LoadRestrictionsNone k8s/kafka/node-ha | $(NODE_KUBECTL) apply -f -
	$(NODE_KUBECTL) -n $(APP_NS) wait kafka/$(HA_KAFKA) --for=condition=Ready --timeout=20m
	$(NODE_KUBECTL) -n $(APP_NS) wait kafkatopic -l strimzi.io/cluster=$(HA_KAFKA) --for=condition=Ready --timeout=5m
	$(NODE_HELM) upgrade --install $(HA_RELEASE) charts/login-stream --namespace $(APP_NS) \
	  --values k8s/values/login-stream.yaml --values k8s/values/local-node/login-stream.yaml \
	  --values k8s/values/local-node/ha.yaml $(HELM_ARGS) --wait --timeout 10m

.PHONY: k8s-node-ha-down
k8s-node-ha-down: TOOLS = helm
k8s-node-ha-down: tools ## On the local node: remove the release login-stream-ha and the three-broker Kafka
	$(NODE_HELM) uninstall $(HA_RELEASE) --namespace $(APP_NS) --ignore-not-found --wait --timeout 5m
	@# the KafkaTopics first, while their Kafka's topic operator runs to remove its finalizer
	$(NODE_KUBECTL) -n $(APP_NS) delete kafkatopic -l strimzi.io/cluster=$(HA_KAFKA) --wait --timeout=5m
	$(KUBECTL) kustomize --load-restrictor=LoadRestrictionsNone k8s/kafka/node-ha | \
	  $(NODE_KUBECTL) delete --ignore-not-found --wait --timeout=5m -f -
	@# Strimzi deletes its claims (deleteClaim) once the pods are gone: then offer the volumes again
	$(NODE_KUBECTL) -n $(APP_NS) wait pvc -l strimzi.io/cluster=$(HA_KAFKA) --for=delete --timeout=5m
	$(K8S_NODE) recycle

# tests/operators needs the operators built (`make operators-build`: hours cold on two shared cores) and the
# node: `make test` does not collect it (pyproject's norecursedirs, like tests/failover); this runs it.
.PHONY: test-operators
test-operators: init ## The operators tier (tests/operators): builds imported, operators and chart on the node, make e2e there
	$(BIN)/pytest tests/operators $(PYTEST_ARGS)

.PHONY: e2e-node
e2e-node: ## make e2e against the local node (its kubeconfig and context; after k8s-node-operators and k8s-node-deploy)
	KUBECONFIG=$(NODE_KUBECONFIG) $(MAKE) --no-print-directory e2e E2E_CONTEXT=$(NODE_CONTEXT)
