##@ Benchmarks and evaluation
# Detector evaluation against the producer's ground truth (scripts/evaluate.py, docs/detection.md).
EVALUATE_EVENTS ?= 500000
EVALUATE_PARTITIONS ?= 6
EVALUATE_ARGS ?=

.PHONY: evaluate
evaluate: kafka-up ## Producer (seed 42, default mix) -> broker -> consumer; per-detector precision/recall/F1 (fails < 0.95)
	$(PY) scripts/evaluate.py --bootstrap $(BOOTSTRAP_SERVERS) --events $(EVALUATE_EVENTS) \
	  --partitions $(EVALUATE_PARTITIONS) $(EVALUATE_ARGS)

.PHONY: evaluate-in-process
evaluate-in-process: init ## The same evaluation without a broker (producer --out file -> Processor + detectors)
	$(PY) scripts/evaluate.py --in-process --events $(EVALUATE_EVENTS) --partitions $(EVALUATE_PARTITIONS) $(EVALUATE_ARGS)
