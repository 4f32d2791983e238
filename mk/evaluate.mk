##@ Detection quality
# Detector evaluation against the producer's ground truth (login_devtools/evaluate.py, docs/detection.md).
EVALUATE_EVENTS ?= 500000
EVALUATE_PARTITIONS ?= 6
EVALUATE_CONSUMERS ?= 1
EVALUATE_ARGS ?=

.PHONY: evaluate
evaluate: kafka-up ## Producer (seed 42) -> broker -> EVALUATE_CONSUMERS login-consumer processes; precision/recall/F1 (fails < 0.95)
	$(BIN)/login-evaluate --bootstrap $(BOOTSTRAP_SERVERS) --events $(EVALUATE_EVENTS) \
	  --partitions $(EVALUATE_PARTITIONS) --consumers $(EVALUATE_CONSUMERS) $(EVALUATE_ARGS)

.PHONY: evaluate-in-process
evaluate-in-process: init ## The same evaluation without a broker (producer --out file -> Processor + detectors)
	$(BIN)/login-evaluate --in-process --events $(EVALUATE_EVENTS) --partitions $(EVALUATE_PARTITIONS) $(EVALUATE_ARGS)
