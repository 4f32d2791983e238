##@ Kubernetes: a real node on this machine (kubelet + containerd; docs/kubernetes.md)
# A real kubelet joins a local control plane in node mode: pods run in Debian's containerd, with CNI,
# kube-proxy, CoreDNS and static local volumes. Root only; one node per machine (login_devtools/k8s_node.py).
# Its API server listens on K8S_NODE_API_PORT (default 6443); the pods' broker is a local broker on the
# node's bridge address (NODE_KAFKA_HOST:NODE_KAFKA_PORT), which pods reach and so does the host.

K8S_NODE         := $(call devtool,k8s_node)
NODE_KAFKA_HOST  ?= 10.250.0.1
NODE_KAFKA_PORT  ?= 9292
# Where the node keeps its state; the node another clone of this machine runs is used by pointing here at
# that clone's folder (make k8s-node-status names it).
K8S_NODE_DIR     ?= $(CURDIR)/.cache/k8s-node
export K8S_NODE_DIR
NODE_KUBECONFIG  := $(K8S_NODE_DIR)/api/kubeconfig

.PHONY: k8s-node-up
k8s-node-up: k8s-api-build ## Start the real node: control plane, containerd, kubelet, kube-proxy, CoreDNS, storage
	$(K8S_NODE) up

.PHONY: k8s-node-down
k8s-node-down: ## Stop the real node and undo its changes (processes, mounts, netns, bridges, iptables, cgroups, sysctls)
	@$(K8S_NODE) down

.PHONY: k8s-node-status
k8s-node-status: ## Show the real node's processes, node and DNS state
	@$(K8S_NODE) status || true

.PHONY: k8s-node-kafka
k8s-node-kafka: init ## A local broker the node's pods reach (on the node's bridge address; make k8s-node-up first)
	KAFKA_HOST=$(NODE_KAFKA_HOST) KAFKA_PORT=$(NODE_KAFKA_PORT) BOOTSTRAP_SERVERS=$(NODE_KAFKA_HOST):$(NODE_KAFKA_PORT) \
	  $(BIN)/login-kafka up
