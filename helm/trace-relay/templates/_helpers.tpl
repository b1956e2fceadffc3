{{/* Names ---------------------------------------------------------------- */}}

{{- define "trace-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trace-relay.fullname" -}}
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

{{- define "trace-relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trace-relay.labels" -}}
helm.sh/chart: {{ include "trace-relay.chart" . }}
{{ include "trace-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "trace-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trace-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: relay
{{- end }}

{{- define "trace-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "trace-relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "trace-relay.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The in-cluster OTLP address of the relay's Service, as BuildKit should use it. */}}
{{- define "trace-relay.otlpEndpoint" -}}
{{- $scheme := ternary "https" "http" .Values.tls.enabled }}
{{- printf "%s://%s.%s.svc:%d" $scheme (include "trace-relay.fullname" .) .Release.Namespace (int .Values.service.otlpPort) }}
{{- end }}

{{/* The OTLP/HTTP traces URL: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as given, path included. */}}
{{- define "trace-relay.otlpHttpTracesEndpoint" -}}
{{- $scheme := ternary "https" "http" .Values.tls.enabled }}
{{- printf "%s://%s.%s.svc:%d/v1/traces" $scheme (include "trace-relay.fullname" .) .Release.Namespace (int .Values.service.otlpHttpPort) }}
{{- end }}

{{/* Durations -------------------------------------------------------------
Seconds (a float) of a duration the relay accepts: 200ms, 5s, 1m, 1h or bare seconds.
Mirrors relay.config.parse_duration; a bad value fails the render. */}}
{{- define "trace-relay.seconds" -}}
{{- $d := toString . | trim }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)?$" $d) }}
{{- fail (printf "not a duration (use e.g. 200ms, 5s, 1m): %q" $d) }}
{{- end }}
{{- if hasSuffix "ms" $d }}
{{- divf (trimSuffix "ms" $d | float64) 1000 }}
{{- else if hasSuffix "s" $d }}
{{- trimSuffix "s" $d | float64 }}
{{- else if hasSuffix "m" $d }}
{{- mulf (trimSuffix "m" $d | float64) 60 }}
{{- else if hasSuffix "h" $d }}
{{- mulf (trimSuffix "h" $d | float64) 3600 }}
{{- else }}
{{- $d | float64 }}
{{- end }}
{{- end }}

{{/* Secrets ---------------------------------------------------------------
Which secret material is in play, and where each piece comes from. The chart's own
Secret holds only what was given inline in values; an existing Secret is referenced. */}}

{{- define "trace-relay.jaegerPasswordEnabled" -}}
{{- if and .Values.jaeger.collector.endpoint (or .Values.jaeger.collector.password .Values.jaeger.collector.existingSecret) }}true{{ end }}
{{- end }}

{{- define "trace-relay.authEnabled" -}}
{{- if .Values.auth.enabled }}true{{ end }}
{{- end }}

{{- define "trace-relay.chartSecretData" -}}
{{- if and (include "trace-relay.jaegerPasswordEnabled" .) (not .Values.jaeger.collector.existingSecret) }}
jaeger-password: {{ .Values.jaeger.collector.password | b64enc | quote }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) }}
tls.crt: {{ .Values.tls.cert | b64enc | quote }}
tls.key: {{ .Values.tls.key | b64enc | quote }}
{{- if .Values.tls.clientCA }}
ca.crt: {{ .Values.tls.clientCA | b64enc | quote }}
{{- end }}
{{- end }}
{{- if and .Values.auth.enabled (not .Values.auth.existingSecret) }}
auth-token: {{ .Values.auth.token | b64enc | quote }}
{{- end }}
{{- end }}

{{/* name and key of the Secret holding the bearer token (the chart's own, or auth.existingSecret). */}}
{{- define "trace-relay.tokenSecretRef" -}}
name: {{ .Values.auth.existingSecret | default (include "trace-relay.fullname" .) }}
key: {{ ternary .Values.auth.existingSecretKey "auth-token" (not (empty .Values.auth.existingSecret)) }}
{{- end }}

{{- define "trace-relay.mutualTLS" -}}
{{- if .Values.tls.enabled }}
{{- if .Values.tls.existingSecret }}{{ if .Values.tls.requireClientCert }}true{{ end }}
{{- else if .Values.tls.clientCA }}true{{ end }}
{{- end }}
{{- end }}

{{/* NetworkPolicy peers: a list of peers (any one admits), or one peer as a map. In each, a
missing or null namespaceSelector means "this namespace only", as in Kubernetes. */}}
{{- define "trace-relay.networkPolicyPeers" -}}
{{- $peers := kindIs "map" . | ternary (list .) . }}
{{- range $peers }}
- podSelector: {{- if .podSelector }}{{ toYaml .podSelector | nindent 4 }}{{ else }} {}{{ end }}
  {{- if not (kindIs "invalid" .namespaceSelector) }}
  namespaceSelector: {{- if .namespaceSelector }}{{ toYaml .namespaceSelector | nindent 4 }}{{ else }} {}{{ end }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Checks that the schema cannot express (cross-field rules). */}}
{{- define "trace-relay.validate" -}}
{{- $shutdown := include "trace-relay.seconds" .Values.relay.shutdownTimeout | float64 }}
{{- $grace := .Values.terminationGracePeriodSeconds | float64 }}
{{- /* The relay exits within its shutdown timeout plus at most ~1 s (a hung Jaeger send). */}}
{{- if lt $grace (addf $shutdown 2) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be at least relay.shutdownTimeout (%s = %vs) + 2s: the kubelet would SIGKILL the relay while it still drains its queue" .Values.terminationGracePeriodSeconds .Values.relay.shutdownTimeout $shutdown) }}
{{- end }}
{{- $_ := include "trace-relay.seconds" .Values.relay.batchTimeout }}
{{- $_ = include "trace-relay.seconds" .Values.relay.retryMaxElapsed }}
{{- $_ = include "trace-relay.seconds" .Values.jaeger.collector.timeout }}
{{- if gt (int .Values.relay.maxBatchSize) (int .Values.relay.queueSize) }}
{{- fail (printf "relay.maxBatchSize (%v) must not exceed relay.queueSize (%v)" .Values.relay.maxBatchSize .Values.relay.queueSize) }}
{{- end }}
{{- if eq (int .Values.relay.otlpPort) (int .Values.relay.adminPort) }}
{{- fail "relay.otlpPort and relay.adminPort must differ" }}
{{- end }}
{{- with .Values.jaeger.collector }}
{{- if and (or .user .password .existingSecret) (not .endpoint) }}
{{- fail "jaeger.collector.user/password/existingSecret apply only with jaeger.collector.endpoint" }}
{{- end }}
{{- if and .user (not (or .password .existingSecret)) }}
{{- fail "jaeger.collector.user needs jaeger.collector.password or jaeger.collector.existingSecret" }}
{{- end }}
{{- if and (or .password .existingSecret) (not .user) }}
{{- fail "jaeger.collector.password/existingSecret needs jaeger.collector.user" }}
{{- end }}
{{- if and .password .existingSecret }}
{{- fail "give either jaeger.collector.password or jaeger.collector.existingSecret, not both" }}
{{- end }}
{{- end }}
{{- with .Values.tls }}
{{- if .enabled }}
{{- if and .existingSecret (or .cert .key .clientCA) }}
{{- fail "give either tls.existingSecret or tls.cert/tls.key/tls.clientCA, not both" }}
{{- end }}
{{- if and (not .existingSecret) (not (and .cert .key)) }}
{{- fail "tls.enabled needs tls.cert and tls.key, or tls.existingSecret" }}
{{- end }}
{{- if and .requireClientCert (not .existingSecret) (not .clientCA) }}
{{- fail "tls.requireClientCert needs tls.clientCA (or ca.crt in tls.existingSecret)" }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.auth }}
{{- if .enabled }}
{{- if and .token .existingSecret }}
{{- fail "give either auth.token or auth.existingSecret, not both" }}
{{- end }}
{{- if not (or .token .existingSecret) }}
{{- fail "auth.enabled needs auth.token or auth.existingSecret" }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled .Values.podDisruptionBudget.minAvailable .Values.podDisruptionBudget.maxUnavailable }}
{{- fail "podDisruptionBudget: give minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- if .Values.buildkit.enabled }}
{{- if and .Values.tls.enabled (not .Values.buildkit.otlpCA.secretName) }}
{{- fail "buildkit.enabled with tls.enabled needs buildkit.otlpCA.secretName: a Secret holding the CA that signed the relay's certificate" }}
{{- end }}
{{- if include "trace-relay.mutualTLS" . }}
{{- fail "the bundled BuildKit presents no client certificate: it cannot be used with mutual TLS (tls.clientCA / tls.requireClientCert)" }}
{{- end }}
{{- if and .Values.buildkit.tcp.enabled (not .Values.buildkit.tcp.tlsSecret) }}
{{- fail "buildkit.tcp.enabled needs buildkit.tcp.tlsSecret (tls.crt, tls.key and the client CA's ca.crt): a TCP listener without mutual TLS would expose the BuildKit API to anyone who reaches it (see the chart README, TLS recipes)" }}
{{- end }}
{{- end }}
{{- end }}
