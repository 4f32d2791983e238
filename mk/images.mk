##@ Images without a Docker daemon (tools/images; docs/images.md)
# The daemon-free builder reads services/Dockerfile and writes one OCI archive per service; `make build`
# uses it when no Docker daemon answers. Root and debootstrap needed; the base is cached per user
# (${XDG_CACHE_HOME:-~/.cache}/login-stream/images), so only the first build takes minutes.
# Standard library only: it runs with $(PYTHON), no virtualenv needed.
IMAGE_BUILDER        ?= PYTHONPATH=$(CURDIR)/tools/images/src $(PYTHON) -m login_images
IMAGES_DIR           ?= .cache/images
IMAGE_TAG            ?= dev
# Local images are named localhost/<name>: a kubelet looks short names up under the default registry.
# Install the chart with --set image.registry=$(LOCAL_REGISTRY) to run them.
LOCAL_REGISTRY       ?= localhost
# the real node's containerd (login_devtools/k8s_node.py: K8S_NODE_RUNTIME, default /run/login-stream-node)
K8S_NODE_RUNTIME     ?= /run/login-stream-node
CONTAINERD_ADDRESS   ?= $(K8S_NODE_RUNTIME)/containerd.sock
CONTAINERD_NAMESPACE ?= k8s.io
IMAGE_SERVICES       := producer consumer
IMAGE_ARCHIVES        = $(foreach s,$(IMAGE_SERVICES),$(IMAGES_DIR)/login-$(s).tar)

.PHONY: images-oci
images-oci: ## Build both images as OCI archives into IMAGES_DIR, no daemon (root + debootstrap)
	@for s in $(IMAGE_SERVICES); do \
	  $(IMAGE_BUILDER) build --dockerfile services/Dockerfile --target $$s --build-arg SERVICE=$$s \
	    --name $(LOCAL_REGISTRY)/login-$$s:$(IMAGE_TAG) --output $(IMAGES_DIR)/login-$$s.tar || exit $$?; \
	done

.PHONY: images-import
images-import: images-oci ## Build, then import the archives into the containerd at CONTAINERD_ADDRESS
	$(IMAGE_BUILDER) import --address $(CONTAINERD_ADDRESS) --namespace $(CONTAINERD_NAMESPACE) $(IMAGE_ARCHIVES)

.PHONY: images-verify
images-verify: ## Check the archives in IMAGES_DIR: digests, sizes, diff_ids; print each image
	$(IMAGE_BUILDER) verify $(IMAGE_ARCHIVES)
