/*
 * login-stream: the class name Strimzi 1.2.0's cluster operator writes into every broker's
 * metric.reporters when the Kafka resource says metricsConfig.type: strimziMetricsReporter
 * (StrimziMetricsReporterConfig.SERVER_KAFKA_CLASS). It belongs to io.strimzi:server-metrics-reporter 0.4.0,
 * which Maven Central does not serve; io.strimzi:metrics-reporter 0.2.0 (which it does) reads the same
 * settings (prometheus.metrics.reporter.listener, .listener.enable, .allowlist) and derives the same metric
 * names. This name is that reporter. Built into Strimzi's Kafka image by tools/operators/strimzi.sh.
 */
package io.strimzi.kafka.metrics.prometheus;

import io.strimzi.kafka.metrics.KafkaPrometheusMetricsReporter;

/** Kafka's own metrics (org.apache.kafka.common.metrics) served for Prometheus, under 0.4.0's name. */
public class ServerKafkaMetricsReporter extends KafkaPrometheusMetricsReporter {
}
