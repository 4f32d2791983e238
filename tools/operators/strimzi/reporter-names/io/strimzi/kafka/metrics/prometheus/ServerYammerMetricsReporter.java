/*
 * login-stream: the class name Strimzi 1.2.0's cluster operator writes into every broker's
 * kafka.metrics.reporters (StrimziMetricsReporterConfig.SERVER_YAMMER_CLASS); see
 * ServerKafkaMetricsReporter.java beside this file for why it extends the 0.2.0 reporter.
 */
package io.strimzi.kafka.metrics.prometheus;

import io.strimzi.kafka.metrics.YammerPrometheusMetricsReporter;

/** The broker's Yammer metrics served for Prometheus, under 0.4.0's name. */
public class ServerYammerMetricsReporter extends YammerPrometheusMetricsReporter {
}
