##@ Benchmark
# Producer targets (services/producer).
PRODUCER_BENCH_EVENTS ?= 200000
PRODUCER_BENCH_MIN_EPS ?= 50000

.PHONY: bench-producer
bench-producer: init ## Producer generation speed: 200k events, --rate 0 to /dev/null (1k and 1M users; fails below 50k ev/s)
	$(PY) services/producer/bench/generation.py --events $(PRODUCER_BENCH_EVENTS) --min-eps $(PRODUCER_BENCH_MIN_EPS)

##@ Set-up and tests
.PHONY: test-producer
test-producer: init kafka-up ## Producer unit and integration tests
	KAFKA_BOOTSTRAP=$${KAFKA_BOOTSTRAP:-$(BOOTSTRAP_SERVERS)} $(BIN)/pytest tests/unit/test_simulate.py \
	  tests/unit/test_simulate_truth.py tests/unit/test_producer_cli.py tests/integration/test_producer_kafka.py $(PYTEST_ARGS)
