##@ Kubernetes (kind cluster; docs/kubernetes.md)
# helm, kind, kubectl, kubeconform, actionlint: used from PATH when their version is supported, else the
# pinned version is built with `go install` into .cache/bin (first on PATH). login_devtools/provision.py holds
# the list, the ranges and the pins. A target needing only some sets TOOLS for itself: `crds: TOOLS = helm`.
TOOLS_BIN := $(CURDIR)/.cache/bin
export PATH := $(TOOLS_BIN):$(PATH)
TOOLS ?= helm kind kubectl kubeconform actionlint

.PHONY: tools
tools: ## helm, kind, kubectl, kubeconform, actionlint: use supported ones on PATH, go install the rest (prints which)
	@$(call devtool,provision) tools $(TOOLS)
