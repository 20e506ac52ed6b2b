{{/*
Names. With nameOverride=tokenplace and release tokenplace (Sugarkube's staging contract) every
object is called "tokenplace".
*/}}
{{- define "tokenplace-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tokenplace-relay.fullname" -}}
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

{{- define "tokenplace-relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image tag actually deployed: image.tag, else the chart's appVersion. */}}
{{- define "tokenplace-relay.imageTag" -}}
{{- toString (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* repo:tag, or repo:tag@digest when a digest is pinned: the tag is always visible. */}}
{{- define "tokenplace-relay.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "tokenplace-relay.imageTag" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{- define "tokenplace-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenplace-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tokenplace-relay.labels" -}}
helm.sh/chart: {{ include "tokenplace-relay.chart" . }}
{{ include "tokenplace-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ include "tokenplace-relay.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: relay
app.kubernetes.io/part-of: tokenplace
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
TOKENPLACE_DEPLOY_ENV: deployEnv, else Sugarkube's top-level `environment`, else TOKEN_PLACE_ENV
from `env`, else inferred from the ingress host (token.place: prod, staging.*: staging, anything else: dev).
*/}}
{{- define "tokenplace-relay.deployEnv" -}}
{{- $aliases := dict "dev" "dev" "development" "dev" "staging" "staging" "int" "staging" "prod" "prod" "production" "prod" }}
{{- $explicit := default .Values.environment .Values.deployEnv | toString | lower }}
{{- if not $explicit }}
{{- $explicit = include "tokenplace-relay.userEnvValue" (list . "TOKEN_PLACE_ENV") | lower }}
{{- end }}
{{- if $explicit }}
{{- get $aliases $explicit | default $explicit }}
{{- else if eq (toString .Values.ingress.host) "token.place" }}
{{- "prod" }}
{{- else if hasPrefix "staging." (toString .Values.ingress.host) }}
{{- "staging" }}
{{- else }}
{{- "dev" }}
{{- end }}
{{- end }}

{{/* The literal value of a variable given in `env` (map or list) or `extraEnv`, else "". */}}
{{- define "tokenplace-relay.userEnvValue" -}}
{{- $root := index . 0 }}
{{- $name := index . 1 }}
{{- $found := "" }}
{{- if kindIs "map" $root.Values.env }}
{{- $v := get $root.Values.env $name }}
{{- if and $v (not (kindIs "map" $v)) }}
{{- $found = toString $v }}
{{- end }}
{{- end }}
{{- $list := default (list) $root.Values.extraEnv }}
{{- if kindIs "slice" $root.Values.env }}
{{- $list = concat $root.Values.env $list }}
{{- end }}
{{- range $list }}
{{- if and (eq .name $name) (hasKey . "value") }}
{{- $found = toString .value }}
{{- end }}
{{- end }}
{{- $found }}
{{- end }}

{{/* True when more than one pod can run at once (only ever with the Redis store). */}}
{{- define "tokenplace-relay.multiReplica" -}}
{{- if and (eq .Values.state.store "redis") (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}true{{ end }}
{{- end }}

{{/* Seconds between the pod's deletion and SIGKILL: preStop sleep + relay grace + margin. */}}
{{- define "tokenplace-relay.terminationGracePeriodSeconds" -}}
{{- $minimum := add (int .Values.lifecycle.preStopSleepSeconds) (int .Values.relay.shutdownGraceSeconds) }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $minimum 5 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) $minimum }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than lifecycle.preStopSleepSeconds (%d) + relay.shutdownGraceSeconds (%d), or the relay is killed before it finishes draining; leave it null to compute it" (int .Values.terminationGracePeriodSeconds) (int .Values.lifecycle.preStopSleepSeconds) (int .Values.relay.shutdownGraceSeconds)) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{- define "tokenplace-relay.nodeTokensDir" -}}/etc/tokenplace/node-tokens{{- end }}

{{/*
The relay container's environment as a YAML list. Order: chart defaults, then `env` (a map or a
list of EnvVar), then `extraEnv`, then the variables the chart owns; a later entry with the same
name replaces an earlier one in place, so every name appears once. Setting a chart-owned name in
`env`/`extraEnv`, or a node/metrics/Redis secret as a literal value, fails the render.
*/}}
{{- define "tokenplace-relay.env" -}}
{{- $owned := list "RELAY_HOST" "RELAY_PORT" "TOKENPLACE_IMAGE_TAG" "TOKENPLACE_RELEASE_VERSION" "TOKENPLACE_CHART_VERSION" "TOKENPLACE_DEPLOY_ENV" "TOKENPLACE_RELAY_DRAIN_SECONDS" "TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS" "TOKENPLACE_METRICS_TOKEN" "TOKENPLACE_METRICS_DISABLED" "TOKENPLACE_RELAY_STATE_STORE" "TOKENPLACE_RELAY_REDIS_URL" "REDIS_URL" "TOKENPLACE_RELAY_SERVER_TOKENS_FILE" }}
{{- $secretNames := list "TOKENPLACE_RELAY_SERVER_TOKEN" "TOKEN_PLACE_RELAY_SERVER_TOKEN" "TOKEN_PLACE_RELAY_SERVER_TOKENS" "TOKENPLACE_RELAY_SERVER_TOKENS" "TOKEN_PLACE_OPERATOR_TOKEN" "TOKEN_PLACE_KEY_ROTATION_TOKEN" "PUBLIC_KEY_ROTATION_TOKEN" }}
{{- $defaults := list }}
{{- $defaults = append $defaults (dict "name" "TOKENPLACE_LOG_LEVEL" "value" (toString .Values.relay.logLevel)) }}
{{- if .Values.relay.trustProxy }}
{{- $defaults = append $defaults (dict "name" "TOKENPLACE_RELAY_TRUST_PROXY" "value" (toString .Values.relay.trustProxy)) }}
{{- end }}
{{- $defaults = append $defaults (dict "name" "TOKENPLACE_ENABLE_LEGACY_RELAY_ROUTES" "value" (ternary "1" "0" .Values.relay.legacyRoutes)) }}
{{- if and .Values.ingress.enabled .Values.ingress.host }}
{{- $defaults = append $defaults (dict "name" "TOKENPLACE_RELAY_PUBLIC_URL" "value" (printf "https://%s" .Values.ingress.host)) }}
{{- end }}
{{- $user := list }}
{{- if kindIs "map" .Values.env }}
{{- range $name := keys .Values.env | sortAlpha }}
{{- $value := get $.Values.env $name }}
{{- if kindIs "map" $value }}
{{- $user = append $user (merge (dict "name" $name) $value) }}
{{- else if kindIs "invalid" $value }}
{{- $user = append $user (dict "name" $name "value" "") }}
{{- else }}
{{- $user = append $user (dict "name" $name "value" (toString $value)) }}
{{- end }}
{{- end }}
{{- else if kindIs "slice" .Values.env }}
{{- $user = concat $user .Values.env }}
{{- end }}
{{- $user = concat $user (default (list) .Values.extraEnv) }}
{{- range $user }}
{{- if has .name $owned }}
{{- fail (printf "env %s is set by the chart (see the chart README, \"Environment\"); remove it from env/extraEnv and use the matching value instead" .name) }}
{{- end }}
{{- if and (has .name $secretNames) (hasKey . "value") }}
{{- fail (printf "env %s must not be a literal value: the chart never renders secrets; use nodeAuth.existingSecret (or valueFrom.secretKeyRef)" .name) }}
{{- end }}
{{- end }}
{{- $managed := list }}
{{- $managed = append $managed (dict "name" "RELAY_HOST" "value" "0.0.0.0") }}
{{- $managed = append $managed (dict "name" "RELAY_PORT" "value" (toString .Values.containerPort)) }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_IMAGE_TAG" "value" (include "tokenplace-relay.imageTag" .)) }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELEASE_VERSION" "value" (toString .Chart.AppVersion)) }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_CHART_VERSION" "value" (toString .Chart.Version)) }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_DEPLOY_ENV" "value" (include "tokenplace-relay.deployEnv" .)) }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_DRAIN_SECONDS" "value" (toString .Values.relay.drainSeconds)) }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS" "value" (toString .Values.relay.shutdownGraceSeconds)) }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_STATE_STORE" "value" .Values.state.store) }}
{{- if eq .Values.state.store "redis" }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_URL" "valueFrom" (dict "secretKeyRef" (dict "name" .Values.state.redis.existingSecret "key" .Values.state.redis.secretKey))) }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_KEY_PREFIX" "value" (toString .Values.state.redis.keyPrefix)) }}
{{- end }}
{{- if .Values.nodeAuth.existingSecret }}
{{- $managed = append $managed (dict "name" "TOKEN_PLACE_RELAY_SERVER_TOKENS" "valueFrom" (dict "secretKeyRef" (dict "name" .Values.nodeAuth.existingSecret "key" .Values.nodeAuth.secretKey))) }}
{{- end }}
{{- if .Values.nodeAuth.tokensFile.existingSecret }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_SERVER_TOKENS_FILE" "value" (printf "%s/%s" (include "tokenplace-relay.nodeTokensDir" .) .Values.nodeAuth.tokensFile.secretKey)) }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_METRICS_TOKEN" "valueFrom" (dict "secretKeyRef" (dict "name" .Values.metrics.auth.existingSecret "key" .Values.metrics.auth.secretKey))) }}
{{- else }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_METRICS_DISABLED" "value" "1") }}
{{- end }}
{{- $order := list }}
{{- $byName := dict }}
{{- range concat $defaults $user $managed }}
{{- if not (hasKey $byName .name) }}
{{- $order = append $order .name }}
{{- end }}
{{- $_ := set $byName .name . }}
{{- end }}
{{- $out := list }}
{{- range $order }}
{{- $out = append $out (get $byName .) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* Fails the render with a clear message when references the chart needs are missing. */}}
{{- define "tokenplace-relay.validate" -}}
{{- if and .Values.metrics.enabled (not .Values.metrics.auth.existingSecret) }}
{{- fail "metrics.enabled=true needs metrics.auth.existingSecret: the name of an existing Secret holding the /metrics Bearer token (the chart never renders Secrets)" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "serviceMonitor.enabled=true needs metrics.enabled=true and metrics.auth.existingSecret: the relay answers 401 on /metrics otherwise" }}
{{- end }}
{{- if and (eq .Values.state.store "redis") (not .Values.state.redis.existingSecret) }}
{{- fail "state.store=redis needs state.redis.existingSecret: the name of an existing Secret holding the redis:// or rediss:// URL" }}
{{- end }}
{{- if and .Values.ingress.enabled .Values.ingress.tls.enabled (not .Values.ingress.host) }}
{{- fail "ingress.tls.enabled=true needs ingress.host" }}
{{- end }}
{{- if and .Values.serviceMonitor.requireCRD .Values.serviceMonitor.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor")) }}
{{- fail "serviceMonitor.requireCRD=true but the cluster has no monitoring.coreos.com/v1 ServiceMonitor (install kube-prometheus-stack, or pass --api-versions monitoring.coreos.com/v1/ServiceMonitor to helm template)" }}
{{- end }}
{{- if and .Values.prometheusRule.requireCRD .Values.prometheusRule.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule")) }}
{{- fail "prometheusRule.requireCRD=true but the cluster has no monitoring.coreos.com/v1 PrometheusRule (install kube-prometheus-stack, or pass --api-versions monitoring.coreos.com/v1/PrometheusRule to helm template)" }}
{{- end }}
{{- if le (float64 .Values.relay.shutdownGraceSeconds) (float64 .Values.relay.drainSeconds) }}
{{- fail (printf "relay.shutdownGraceSeconds (%v) must be greater than relay.drainSeconds (%v): the relay refuses to start otherwise" .Values.relay.shutdownGraceSeconds .Values.relay.drainSeconds) }}
{{- end }}
{{- if and .Values.lifecycle.sleepAction (semverCompare "<1.30.0-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "lifecycle.sleepAction=true needs Kubernetes 1.30 or later (this cluster is %s); leave it false to use exec sleep" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- $_ := include "tokenplace-relay.terminationGracePeriodSeconds" . }}
{{- $_ = include "tokenplace-relay.env" . }}
{{- end }}
