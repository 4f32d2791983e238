##@ Benchmarks and evaluation
# login-consumer: benchmark (scripts/bench_consumer.py).
BENCH_ARGS ?=

.PHONY: bench-consumer
bench-consumer: kafka-up ## Consumer benchmark: in-process events/s (fails below 100k/s) and end to end via the broker
	$(PY) scripts/bench_consumer.py --bootstrap $(BOOTSTRAP_SERVERS) $(BENCH_ARGS)

.PHONY: bench
bench: bench-consumer ## Run the benchmarks
