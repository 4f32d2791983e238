##@ Observability (alert rules, dashboards, a local Prometheus)
# Observability: alert rules (promtool), dashboards as code, a local Prometheus. See docs/observability.md.
PROMTOOL        ?= $(shell command -v promtool 2>/dev/null || echo /usr/bin/promtool)
RULE_FILES      := $(wildcard monitoring/rules/*.yaml)
RULE_TESTS      := $(wildcard monitoring/tests/*.test.yaml)
PROMETHEUS_PORT ?= 9090
CONSUMER_METRICS ?= 127.0.0.1:8000
PRODUCER_METRICS ?= 127.0.0.1:8001
KAFKA_METRICS    ?= 127.0.0.1:$(shell echo $$(( $(KAFKA_PORT) + 4 )))
ALERTMANAGER_PORT ?= 9093
# host:port of the Alertmanager `make prometheus` sends alerts to (empty: none)
ALERTMANAGER     ?= 127.0.0.1:$(ALERTMANAGER_PORT)
AMTOOL           ?= $(shell command -v amtool 2>/dev/null || echo /usr/bin/amtool)
ALERTMANAGER_TREE := monitoring/alertmanager/alertmanager.yml

.PHONY: rules-check
rules-check: ## promtool check rules + promtool test rules (alert unit tests); amtool check-config (routing tree)
	$(PROMTOOL) check rules $(RULE_FILES)
	$(PROMTOOL) test rules $(RULE_TESTS)
	$(AMTOOL) check-config $(ALERTMANAGER_TREE)

.PHONY: dashboards
dashboards: init ## Regenerate dashboards/*.json from login_devtools/build_dashboards.py
	$(BIN)/login-dashboards

.PHONY: dashboards-check
dashboards-check: init ## Fail if dashboards/*.json differ from what the generator writes
	$(BIN)/login-dashboards --check

.PHONY: prometheus
prometheus: init ## Run a local Prometheus (rules loaded) scraping CONSUMER_METRICS, PRODUCER_METRICS, KAFKA_METRICS
	$(BIN)/login-prometheus --port $(PROMETHEUS_PORT) \
	  --consumer $(CONSUMER_METRICS) --producer $(PRODUCER_METRICS) --kafka $(KAFKA_METRICS) \
	  --alertmanager "$(ALERTMANAGER)"

.PHONY: alertmanager
alertmanager: init ## Run a local Alertmanager with the routing tree (ALERT_WEBHOOK_URL, SLACK_API_URL_FILE, ...)
	$(BIN)/login-alertmanager --port $(ALERTMANAGER_PORT)

.PHONY: test-observability
test-observability: init kafka-up ## Rules, dashboards and the real-Prometheus test only
	KAFKA_BOOTSTRAP=$${KAFKA_BOOTSTRAP:-$(BOOTSTRAP_SERVERS)} $(BIN)/pytest tests/observability $(PYTEST_ARGS)

# Tracing (docs/observability.md, "Tracing"): Jaeger v2 built from its Go module (tools/jaeger/build.sh,
# pinned in tools/jaeger/versions), once per user into ~/.cache/login-stream/jaeger-<version>/, niced.
# `make run`/`make demo` start it and switch the services' tracing on (TRACING=0: neither).
TRACING ?= 1
ID ?=

.PHONY: jaeger
jaeger: ## Build Jaeger v2, the local trace backend, once per user (first time: many minutes; then cached)
	@bash tools/jaeger/build.sh >/dev/null

# `make trace` reads the local pipeline's Jaeger: `make help` lists it with the pipeline's targets.
##@ Local pipeline (no cluster: local broker, services from .venv, local Prometheus)
.PHONY: trace
trace: init ## Trace ids of the latest high-risk logins in the local Jaeger; ID=<trace id> prints that trace as a tree
	@$(PIPELINE) trace $(ID)
##@ Observability (alert rules, dashboards, a local Prometheus)

run demo: $(if $(filter 0,$(TRACING)),,jaeger)
test-prereqs: jaeger
