{{/*
The consumer's topology (docs/consumer.md, issue #10): one consumer group, GROUP_ID, subscribed to the
input topic (the user stage) and, when credential_stuffing runs, to <GROUP_ID>-network-repartition (the
network stage). Names follow login_consumer's ConsumerSettings (repartition_topic(), network_state_topic(),
changelog_topic()); tests/chart/test_stages.py compares them.
*/}}

{{/* "true" when the consumer runs the network stage: consumer.detectors (a list, DETECTORS) holds "all" or
credential_stuffing, as login_consumer.detectors.names.parse_detectors reads DETECTORS. */}}
{{- define "login-stream.networkStage" -}}
{{- $names := .Values.consumer.detectors | default list }}
{{- if or (has "all" $names) (has "credential_stuffing" $names) }}true{{ end }}
{{- end }}

{{- define "login-stream.repartitionTopic" -}}
{{- printf "%s-network-repartition" .Values.consumer.groupId }}
{{- end }}

{{/* The input topic of every stage, as a YAML list of {stage, topic}: what KEDA follows. */}}
{{- define "login-stream.stageTopics" -}}
- {stage: user, topic: {{ .Values.kafka.topics.input | quote }}}
{{- if include "login-stream.networkStage" . }}
- {stage: network, topic: {{ include "login-stream.repartitionTopic" . | quote }}}
{{- end }}
{{- end }}

{{/* KEDA's maxReplicaCount: keda.maxReplicas, or (0, the default) kafka.inputPartitions, the ceiling of
parallelism: every stage's input topic has that many partitions, and a consumer beyond them gets none. */}}
{{- define "login-stream.kedaMaxReplicas" -}}
{{- int (.Values.keda.maxReplicas | default .Values.kafka.inputPartitions) }}
{{- end }}
