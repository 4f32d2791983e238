# Go-built tools (helm, kubeconform, kind, actionlint) installed with `go install` into .cache/bin.
TOOLS_BIN := $(CURDIR)/.cache/bin
export PATH := $(TOOLS_BIN):$(PATH)

HELM_VERSION        ?= v3.22.0
KUBECONFORM_VERSION ?= v0.8.0
KIND_VERSION        ?= v0.33.0
ACTIONLINT_VERSION  ?= v1.7.12

$(TOOLS_BIN)/helm:
	GOBIN=$(TOOLS_BIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
$(TOOLS_BIN)/kubeconform:
	GOBIN=$(TOOLS_BIN) go install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
$(TOOLS_BIN)/kind:
	GOBIN=$(TOOLS_BIN) go install sigs.k8s.io/kind@$(KIND_VERSION)
$(TOOLS_BIN)/actionlint:
	GOBIN=$(TOOLS_BIN) go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)

.PHONY: tools
tools: $(TOOLS_BIN)/helm $(TOOLS_BIN)/kubeconform $(TOOLS_BIN)/kind $(TOOLS_BIN)/actionlint ## Install helm, kubeconform, kind and actionlint (go install) into .cache/bin
