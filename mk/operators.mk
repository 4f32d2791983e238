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
CONTAINERD_ADDRESS   ?= $(CURDIR)/.cache/k8s/node/containerd/containerd.sock
CONTAINERD_NAMESPACE ?= k8s.io
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
