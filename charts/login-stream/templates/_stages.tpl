{{/*
The consumer's topology (docs/consumer.md, issue #10): one consumer group, GROUP_ID, subscribed to the
input topic (the user stage) and, when credential_stuffing runs, to <GROUP_ID>-network-repartition (the
network stage). Names follow login_consumer's ConsumerSettings (repartition_topic(), network_state_topic(),
changelog_topic()); tests/k8s/test_stages.py compares them.
*/}}

{{/* "true" when the consumer runs the network stage: DETECTORS (consumer.env) unset (default "all"),
"all" or naming credential_stuffing; as login_consumer.detect.parse_detectors reads it ("" = none). */}}
{{- define "login-stream.networkStage" -}}
{{- $names := list }}
{{- range splitList "," (toString (get .Values.consumer.env "DETECTORS" | default "" )) }}
{{- if trim . }}{{ $names = append $names (trim .) }}{{ end }}
{{- end }}
{{- if or (not (hasKey .Values.consumer.env "DETECTORS")) (has "all" $names) (has "credential_stuffing" $names) }}true{{ end }}
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
