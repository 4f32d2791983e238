{{/* Chart name, truncated to 63 characters. */}}
{{- define "login-stream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource-name prefix: the release name, or <release>-<chart> when the release name lacks the chart name. */}}
{{- define "login-stream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "login-stream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object (without the instance label). */}}
{{- define "login-stream.commonLabels" -}}
helm.sh/chart: {{ include "login-stream.chart" . }}
app.kubernetes.io/part-of: {{ include "login-stream.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* Labels of objects that belong to no single component. */}}
{{- define "login-stream.labels" -}}
{{ include "login-stream.commonLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of one component. app.kubernetes.io/name is the service's name (login-producer,
login-consumer): the ServiceMonitor uses it as Prometheus' job label, which the alert rules and
dashboards rely on. Call with (dict "root" $ "component" "consumer").
*/}}
{{- define "login-stream.selectorLabels" -}}
app.kubernetes.io/name: login-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "login-stream.componentLabels" -}}
{{ include "login-stream.commonLabels" .root }}
{{ include "login-stream.selectorLabels" . }}
{{- end }}

{{/*
kafka.bootstrapServers as cluster DNS names, for clients outside the release namespace (KEDA's scalers
run in the keda-operator pod, in KEDA's namespace): a host without a dot is a Service of the release
namespace and becomes <host>.<namespace>.svc; other hosts are left as they are (keda.bootstrapServers
overrides the result).
*/}}
{{- define "login-stream.clusterBootstrapServers" -}}
{{- $out := list }}
{{- range splitList "," .Values.kafka.bootstrapServers }}
{{- $address := trim . }}
{{- $host := regexReplaceAll ":[0-9]+$" $address "" }}
{{- if contains "." $host }}
{{- $out = append $out $address }}
{{- else }}
{{- $out = append $out (printf "%s.%s.svc%s" $host $.Release.Namespace (trimPrefix $host $address)) }}
{{- end }}
{{- end }}
{{- join "," $out }}
{{- end }}

{{/*
Selector of every pod of this release, and only those: app.kubernetes.io/instance alone is not enough,
because Strimzi labels its pods with app.kubernetes.io/instance=<Kafka name>, and the Kafka of
k8s/kafka/ has the release's name. Strimzi's part-of is strimzi-<Kafka name>, never this chart's name.
*/}}
{{- define "login-stream.releaseSelector" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: {{ include "login-stream.name" . }}
{{- end }}

{{- define "login-stream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "login-stream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference of one component: [registry/]repository:tag. */}}
{{- define "login-stream.image" -}}
{{- $c := index .root.Values .component }}
{{- $tag := $c.image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- if .root.Values.image.registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) $c.image.repository $tag }}
{{- else }}
{{- printf "%s:%s" $c.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Refuse settings that cannot work: more consumers than input partitions sit idle. */}}
{{- define "login-stream.validate" -}}
{{- $partitions := int .Values.kafka.inputPartitions }}
{{- if and .Values.consumer.enabled (not .Values.keda.enabled) (gt (int .Values.consumer.replicas) $partitions) }}
{{- fail (printf "consumer.replicas (%d) exceeds kafka.inputPartitions (%d): the extra consumers would get no partition" (int .Values.consumer.replicas) $partitions) }}
{{- end }}
{{- if .Values.keda.enabled }}
{{- $max := int (include "login-stream.kedaMaxReplicas" .) }}
{{- if gt $max $partitions }}
{{- fail (printf "keda.maxReplicas (%d) exceeds kafka.inputPartitions (%d)" $max $partitions) }}
{{- end }}
{{- if gt (int .Values.keda.minReplicas) $max }}
{{- fail (printf "keda.minReplicas (%d) exceeds keda.maxReplicas (%d)" (int .Values.keda.minReplicas) $max) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The pod template shared by both Deployments. Call with (dict "root" $ "component" "consumer" "env" <list>).
*/}}
{{- define "login-stream.podTemplate" -}}
{{- $root := .root }}
{{- $c := index $root.Values .component -}}
metadata:
  labels:
    {{- include "login-stream.componentLabels" . | nindent 4 }}
  {{- with $c.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "login-stream.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $c.terminationGracePeriodSeconds }}
  terminationGracePeriodSeconds: {{ . }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: {{ include "login-stream.image" . | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      env:
        - name: BOOTSTRAP_SERVERS
          value: {{ $root.Values.kafka.bootstrapServers | quote }}
        - name: INPUT_TOPIC
          value: {{ $root.Values.kafka.topics.input | quote }}
        - name: METRICS_PORT
          value: {{ $c.metricsPort | quote }}
        - name: LOG_FORMAT
          value: {{ $root.Values.logging.format | quote }}
        - name: LOG_LEVEL
          value: {{ $root.Values.logging.level | quote }}
        {{- with include "login-stream.tracingEnv" $root | trim }}{{ . | nindent 8 }}{{- end }}
        {{- with .env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- range $name, $value := $c.env }}
        - name: {{ $name }}
          value: {{ $value | toString | quote }}
        {{- end }}
        {{- with include "login-stream.kafkaSecurityEnv" . | trim }}{{ . | nindent 8 }}{{- end }}
      ports:
        - name: metrics
          containerPort: {{ $c.metricsPort }}
          protocol: TCP
      startupProbe:
        httpGet: {path: /healthz, port: metrics}
        {{- toYaml $root.Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet: {path: /healthz, port: metrics}
        {{- toYaml $root.Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet: {path: /ready, port: metrics}
        {{- toYaml $root.Values.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml $c.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- with include "login-stream.kafkaSecurityMounts" . | trim }}{{ . | nindent 8 }}{{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- with include "login-stream.kafkaSecurityVolumes" . | trim }}{{ . | nindent 4 }}{{- end }}
  {{- with $c.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* OpenTelemetry's standard settings when tracing.otlpEndpoint is set (docs/observability.md, "Tracing");
the pod's name and namespace as resource attributes. Nothing when it is empty: tracing off. */}}
{{- define "login-stream.tracingEnv" -}}
{{- with .Values.tracing.otlpEndpoint }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $.Values.tracing.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $.Values.tracing.sampleRatio | toString | quote }}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.namespace.name=$(POD_NAMESPACE),service.namespace={{ $.Release.Name }}"
{{- end }}
{{- end }}

{{/* The OTLP endpoint's port (its URL's, else the protocol's convention: 4318 http, 4317 grpc). */}}
{{- define "login-stream.tracingPort" -}}
{{- $host := (urlParse .Values.tracing.otlpEndpoint).host }}
{{- if regexMatch ":[0-9]+$" $host }}{{ regexFind "[0-9]+$" $host }}
{{- else if eq .Values.tracing.protocol "grpc" }}4317{{ else }}4318{{ end }}
{{- end }}
