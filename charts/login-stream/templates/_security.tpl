{{/*
Kafka client security (kafka.security, docs/security.md). Secret names and keys are Strimzi 1.2.0's:
a KafkaUser's Secret has the KafkaUser's name and holds `password` + `sasl.jaas.config` (scram-sha-512)
or `ca.crt`, `user.crt`, `user.key`, `user.p12`, `user.password` (tls); the cluster CA certificate is in
<cluster>-cluster-ca-cert under `ca.crt`. tests/chart/test_security_manifests.py pins them.
*/}}

{{/* KafkaUser (and Secret) name of a component: producer, consumer or check. (dict "root" $ "component" "x") */}}
{{- define "login-stream.kafkaUser" -}}
{{- printf "%s-%s" (include "login-stream.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "login-stream.kafkaCaSecret" -}}
{{- $s := .Values.kafka.security }}
{{- $s.caSecret | default (printf "%s-cluster-ca-cert" $s.cluster) }}
{{- end }}

{{/* Environment of a Kafka client pod (empty when security is off). (dict "root" $ "component" "x") */}}
{{- define "login-stream.kafkaSecurityEnv" -}}
{{- $s := .root.Values.kafka.security }}
{{- if $s.enabled }}
- name: SSL_CA_LOCATION
  value: /etc/kafka/ca/ca.crt
{{- if eq $s.authentication "tls" }}
- name: SECURITY_PROTOCOL
  value: SSL
- name: SSL_CERTIFICATE_LOCATION
  value: /etc/kafka/user/user.crt
- name: SSL_KEY_LOCATION
  value: /etc/kafka/user/user.key
{{- else }}
- name: SECURITY_PROTOCOL
  value: SASL_SSL
- name: SASL_MECHANISM
  value: SCRAM-SHA-512
- name: SASL_USERNAME
  value: {{ include "login-stream.kafkaUser" . | quote }}
- name: SASL_PASSWORD_FILE
  value: /etc/kafka/user/password
{{- end }}
{{- end }}
{{- end }}

{{- define "login-stream.kafkaSecurityMounts" -}}
{{- if .root.Values.kafka.security.enabled }}
- {name: kafka-user, mountPath: /etc/kafka/user, readOnly: true}
- {name: kafka-ca, mountPath: /etc/kafka/ca, readOnly: true}
{{- end }}
{{- end }}

{{- define "login-stream.kafkaSecurityVolumes" -}}
{{- $s := .root.Values.kafka.security }}
{{- if $s.enabled }}
- name: kafka-user
  secret:
    secretName: {{ include "login-stream.kafkaUser" . | quote }}
    defaultMode: 0440
    items:
      {{- if eq $s.authentication "tls" }}
      - {key: user.crt, path: user.crt}
      - {key: user.key, path: user.key}
      {{- else }}
      - {key: password, path: password}
      {{- end }}
- name: kafka-ca
  secret:
    secretName: {{ include "login-stream.kafkaCaSecret" .root | quote }}
    defaultMode: 0444
    items:
      - {key: ca.crt, path: ca.crt}
{{- end }}
{{- end }}
