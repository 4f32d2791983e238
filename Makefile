# login-stream — run `make help` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.init-stamp
export KAFKA_PORT ?= 9092
export BOOTSTRAP_SERVERS ?= 127.0.0.1:$(KAFKA_PORT)
DURATION ?=
PYTEST_ARGS ?=

SERVICE_SRC := libs/common/src services/producer/src services/consumer/src

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements/constraints.txt requirements/dev.txt libs/common/pyproject.toml services/producer/pyproject.toml services/consumer/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel -c requirements/constraints.txt 2>/dev/null || $(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -c requirements/constraints.txt -r requirements/dev.txt \
	  -e libs/common -e services/producer -e services/consumer
	@touch $(STAMP)

.PHONY: init
init: $(STAMP) ## Create .venv and install both services (editable) and the dev tools

.PHONY: kafka-up
kafka-up: init ## Start a local Kafka broker (KRaft) if none answers; KAFKA_SECURITY=sasl_ssl: SASL_SSL + ACLs
	$(PY) scripts/local_kafka.py up

.PHONY: kafka-down
kafka-down: ## Stop the local Kafka broker
	@$(PYTHON) scripts/local_kafka.py down

.PHONY: kafka-status
kafka-status: ## Show the local broker's state, address, log file (and client security settings)
	@$(PYTHON) scripts/local_kafka.py status || true

.PHONY: lint
lint: init ## ruff check, ruff format --check, mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(SERVICE_SRC)

.PHONY: fmt
fmt: init ## Format and auto-fix the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: test
test: lint kafka-up ## Lint, then run every test against a real broker
	KAFKA_BOOTSTRAP=$${KAFKA_BOOTSTRAP:-$(BOOTSTRAP_SERVERS)} $(BIN)/pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: init ## Run the unit tests only (no broker)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

.PHONY: demo
demo: kafka-up ## Run producer and consumer with a live view (DURATION=30 to stop after 30 s)
	$(PY) scripts/demo.py $(if $(DURATION),--duration $(DURATION))

.PHONY: clean-venv
clean-venv: ## Remove .venv
	rm -rf $(VENV)

-include mk/*.mk
