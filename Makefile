# login-stream — run `make help` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.init-stamp
# The developer tools (tools/devtools, package login_devtools) installed in .venv are console scripts
# ($(BIN)/login-kafka, ...); a target that must work without .venv (kafka-down, setup, tools, the control
# plane and the node, run as root) runs the same module from the source tree with the system Python:
# $(call devtool,local_kafka) down.
devtool = PYTHONPATH=$(CURDIR)/tools/devtools/src$(if $(PYTHONPATH),:$(PYTHONPATH)) $(PYTHON) -m login_devtools.$(1)
export KAFKA_PORT ?= 9092
# 1: one combined broker+controller (the default: `make demo`, `make test`); 3: three brokers and three
# KRaft controllers on ports from KAFKA_PORT on (tools/devtools/src/login_devtools/kafka_cluster.py).
export KAFKA_BROKERS ?= 1
ifeq ($(KAFKA_BROKERS),1)
export BOOTSTRAP_SERVERS ?= 127.0.0.1:$(KAFKA_PORT)
else
export BOOTSTRAP_SERVERS ?= $(shell $(call devtool,local_kafka) bootstrap)
endif
DURATION ?=
PYTEST_ARGS ?=

SERVICE_SRC := libs/common/src services/producer/src services/consumer/src
TOOLS_SRC   := tools/images/src tools/devtools/src bench/src

##@ Set-up and tests
# `make help` groups targets under the `##@ Section` line above them (same-named sections merge).
.PHONY: help
help: ## Show this help, grouped: set-up and tests, the local pipeline, Kubernetes, ...
	@awk 'BEGIN { FS = ":.*## " } \
	  FNR == 1 { section = "Other" } \
	  /^##@ / { section = substr($$0, 5); next } \
	  /^[a-zA-Z0-9_.-]+:.*## / { \
	    if (!(section in seen)) { seen[section] = 1; order[++n] = section } \
	    body[section] = body[section] sprintf("  \033[36m%-20s\033[0m %s\n", $$1, $$2) } \
	  END { for (i = 1; i <= n; i++) printf "\n\033[1m%s\033[0m\n%s", order[i], body[order[i]] }' $(MAKEFILE_LIST)

$(STAMP): requirements/constraints.txt requirements/dev.txt libs/common/pyproject.toml services/producer/pyproject.toml services/consumer/pyproject.toml tools/images/pyproject.toml \
  tools/devtools/pyproject.toml bench/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel -c requirements/constraints.txt 2>/dev/null || $(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -c requirements/constraints.txt -r requirements/dev.txt \
	  -e libs/common -e services/producer -e services/consumer -e tools/images -e tools/devtools -e bench
	@touch $(STAMP)

.PHONY: init
init: $(STAMP) ## Create .venv and install both services (editable) and the dev tools

# Everything `make test` needs before its first test: system packages (apt-get when root or passwordless
# sudo), the Go-built tools, the CRDs, the virtualenv. login_devtools/provision.py holds the one list of needs;
# another prerequisite (a build, say) is added from an mk/*.mk file as `test-prereqs: my-target`.
.PHONY: setup
setup: init ## Install what the tests need (apt-get, go install) or stop naming what is missing and how to get it
	@$(call devtool,provision) setup

.PHONY: test-prereqs
test-prereqs: setup

.PHONY: lint
lint: init ## ruff check, ruff format --check, mypy --strict, lint-imports (no import circle)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(SERVICE_SRC) $(TOOLS_SRC)
	$(BIN)/lint-imports

.PHONY: fmt
fmt: init ## Format and auto-fix the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: test
test: test-prereqs lint kafka-up ## Set up (make setup), lint, then run every test against a real broker
	KAFKA_BOOTSTRAP=$${KAFKA_BOOTSTRAP:-$(BOOTSTRAP_SERVERS)} $(BIN)/pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: init ## Run the unit tests only (no broker)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# The README tier (tests/readme): every command README.md shows, run through make from this root, as
# written. `make test` runs it too (tests/ is its test path); this runs it alone.
.PHONY: test-readme
test-readme: init kafka-up ## Run every command the README shows, as written, and check what it promises
	KAFKA_BOOTSTRAP=$${KAFKA_BOOTSTRAP:-$(BOOTSTRAP_SERVERS)} $(BIN)/pytest tests/readme $(PYTEST_ARGS)

# The README commands too slow (or too speed-bound) for `make test`: make evaluate, make bench (quick and
# full) and make bench-producer (tests/readme/test_long.py). `make test` skips them, naming it; CI has no time for them.
.PHONY: test-readme-long
test-readme-long: init kafka-up ## The README tier with its long commands too (evaluate, bench, bench-producer): for CI
	README_LONG=1 KAFKA_BOOTSTRAP=$${KAFKA_BOOTSTRAP:-$(BOOTSTRAP_SERVERS)} $(BIN)/pytest tests/readme $(PYTEST_ARGS)

# The fault tests kill brokers of their own three-broker cluster on FAILOVER_KAFKA_PORT (KAFKA_PORT + 100:
# beside the single broker), started for the run and stopped after it (docs/failover.md).
FAILOVER_KAFKA_PORT ?= $(shell echo $$(( $(KAFKA_PORT) + 100 )))

.PHONY: test-failover
test-failover: init ## Fault tests on a real three-broker cluster: broker and controller kills, rolling restart (figures at the end)
	FAILOVER_KAFKA_PORT=$(FAILOVER_KAFKA_PORT) $(BIN)/pytest tests/failover $(PYTEST_ARGS)

.PHONY: clean-venv
clean-venv: ## Remove .venv
	rm -rf $(VENV)

##@ Local pipeline (no cluster: local broker, services from .venv, local Prometheus)
PIPELINE := $(BIN)/login-pipeline
RATE     ?= 200

.PHONY: demo
demo: kafka-up ## Run the pipeline in the foreground with the live view (DURATION=30 stops after 30 s)
	$(BIN)/login-demo $(if $(DURATION),--duration $(DURATION))

.PHONY: run
run: init ## Start broker, producer (RATE=200/s), consumer and Prometheus in the background, then return
	$(PIPELINE) run --rate $(RATE)

.PHONY: watch
watch: init ## Live view of the pipeline `make run` started (Ctrl-C leaves it running)
	@$(BIN)/login-live-view

.PHONY: health
health: init ## Broker, processes, /ready of both services, Prometheus and its targets (exit 1 if any is down)
	$(PIPELINE) health

.PHONY: logs
logs: init ## Follow the logs of the local pipeline (LINES=20 first; FOLLOW=0 prints and returns)
	$(PIPELINE) logs --lines $(or $(LINES),20) $(if $(filter 0,$(FOLLOW)),--no-follow)

.PHONY: monitor
monitor: init ## Links into the local Prometheus (throughput, lag, risk) and the alerts that fire
	$(PIPELINE) monitor

.PHONY: stop
stop: ## Stop what `make run` started (and the broker if `make run` started it)
	@if [ -x $(PY) ]; then $(PIPELINE) stop; else echo "no local pipeline (no .venv)"; fi

.PHONY: build
build: ## Build both images: with Docker when its daemon answers, else as OCI archives (make images-oci)
	@if $(DOCKER) info >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory images; \
	else \
	  echo "make build: no Docker daemon answers (\`$(DOCKER) info\` fails): building with the daemon-free builder (tools/images) into $(IMAGES_DIR)"; \
	  $(MAKE) --no-print-directory images-oci; \
	fi

.PHONY: clean
clean: stop ## Stop the local pipeline and remove its state, logs and the tool caches (.venv stays)
	rm -rf .cache/run .cache/demo .cache/prometheus .pytest_cache .mypy_cache .ruff_cache

##@ Local Kafka broker
.PHONY: kafka-up
kafka-up: init ## Start a local Kafka broker (KRaft) if none answers; KAFKA_BROKERS=3: a cluster; KAFKA_SECURITY=sasl_ssl: SASL_SSL + ACLs
	$(BIN)/login-kafka up

.PHONY: kafka-down
kafka-down: ## Stop the local Kafka broker (or every node of the cluster on KAFKA_PORT)
	@$(call devtool,local_kafka) down

.PHONY: kafka-status
kafka-status: ## Show the local broker's (or each cluster node's) state, address, log file, security settings
	@$(call devtool,local_kafka) status || true

# every mk/*.mk is read; a file that cannot be read stops make (no silent skip)
include mk/*.mk
