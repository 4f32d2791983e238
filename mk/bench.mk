##@ Benchmark
# make bench: bench/src/login_bench/harness.py (README "Benchmark"). Never part of `make test`; it reports, it does not gate.
BENCH_QUICK ?=
BENCH_H_EVENTS ?=
BENCH_P_EVENTS ?=
BENCH_RUNS ?=
BENCH_ONLY ?=
BENCH_MAX_DRAIN_SECONDS ?=
BENCH_ARGS ?=
# A quick run writes beside the full run's committed results, never over them (bench/results/quick is
# git-ignored).
BENCH_OUT ?= $(if $(BENCH_QUICK),bench/results/quick,bench/results)
KAFKA_VERSION ?= 4.3.1
QUIX_VENV := .venv-quix
QUIX_STAMP := $(QUIX_VENV)/.init-stamp
PERF_LIBS := .cache/kafka-perf/libs-$(KAFKA_VERSION)

# Quix Streams 3.x pins confluent-kafka < 2.13 and pydantic(-settings) below the project's pins, so its
# contender runs in an environment of its own, with login-common and login-consumer installed from here.
$(QUIX_STAMP): requirements/bench-quix.txt requirements/bench-quix-constraints.txt libs/common/pyproject.toml services/consumer/pyproject.toml
	@test -x $(QUIX_VENV)/bin/python || $(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install -q -c requirements/bench-quix-constraints.txt -r requirements/bench-quix.txt \
	  -e libs/common -e services/consumer
	@touch $@

$(PERF_LIBS)/.done: tools/kafka-perf/pom.xml
	@command -v mvn >/dev/null || { echo "mvn (Apache Maven) is needed to fetch Kafka's perf tools"; exit 1; }
	mvn -q -f tools/kafka-perf/pom.xml dependency:copy-dependencies -Dkafka.version=$(KAFKA_VERSION) \
	  -DoutputDirectory=$(CURDIR)/$(PERF_LIBS)
	@touch $@

.PHONY: bench-env
bench-env: init $(QUIX_STAMP) $(PERF_LIBS)/.done ## Set up what make bench needs: .venv-quix (Quix Streams) and Kafka's perf tools

.PHONY: bench
bench: kafka-up bench-env ## Benchmark vs Kafka perf tools, passthrough, Quix, seed loop (~20 min; BENCH_QUICK=1 ~3 min idle, ~10 min under load)
	$(BIN)/login-bench --bootstrap $(BOOTSTRAP_SERVERS) $(if $(BENCH_QUICK),--quick) \
	  $(if $(BENCH_H_EVENTS),--h-events $(BENCH_H_EVENTS)) $(if $(BENCH_P_EVENTS),--p-events $(BENCH_P_EVENTS)) \
	  $(if $(BENCH_RUNS),--runs $(BENCH_RUNS)) $(if $(BENCH_ONLY),--only $(BENCH_ONLY)) \
	  $(if $(BENCH_MAX_DRAIN_SECONDS),--max-drain-seconds $(BENCH_MAX_DRAIN_SECONDS)) --out $(BENCH_OUT) $(BENCH_ARGS)

# make bench-tracing: bench/src/login_bench/tracing.py (docs/observability.md, "Tracing: cost"). Fresh producer and
# consumer processes per mode and run, exporting to a real Jaeger; then the per-event/per-batch spans.
# BENCH_QUICK=1: 30,000 events, one run. Reports; never gates.
.PHONY: bench-tracing
bench-tracing: kafka-up init jaeger ## What tracing costs: pipeline with tracing off, at 1% and 100% sampling (~15 min)
	$(PY) -m login_bench.tracing --bootstrap $(BOOTSTRAP_SERVERS) $(if $(BENCH_QUICK),--events 30000 --runs 1) --out $(BENCH_OUT)
	$(PY) -m login_bench.tracing --spans --out $(BENCH_OUT)
