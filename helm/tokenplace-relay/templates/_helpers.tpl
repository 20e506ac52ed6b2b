{{/*
Names. The app name is nameOverride, else the release name when the chart name starts with it
(release "tokenplace", the name Sugarkube's tokenplace app and upstream's `tokenplace` chart use:
every object is then called "tokenplace" and labelled app.kubernetes.io/name=tokenplace), else the
chart name (release "tokenplace-relay" keeps "tokenplace-relay", as the Dec-2025 runbook deployed).
*/}}
{{- define "tokenplace-relay.name" -}}
{{- if .Values.nameOverride }}
{{- .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- else if hasPrefix (printf "%s-" .Release.Name) .Chart.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "tokenplace-relay.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "tokenplace-relay.name" . }}
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

{{/*
"true" when the deployed tag can point at another image later (main-latest, main, latest, ...):
anything but <branch>-<7-40 hex> (the workflow's immutable tag), a semantic version, or a pinned
digest. Sugarkube's Aug-2026 recipe refuses such tags; the Dec-2025 one deploys main-latest.
*/}}
{{- define "tokenplace-relay.mutableTag" -}}
{{- $tag := include "tokenplace-relay.imageTag" . }}
{{- $branchSha := regexMatch "^[a-z0-9][a-z0-9._-]*-[0-9a-f]{7,40}$" $tag }}
{{- $semver := regexMatch "^v?[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.-]+)?$" $tag }}
{{- if and (not .Values.image.digest) (or (contains "latest" $tag) (not (or $branchSha $semver))) }}true{{ end }}
{{- end }}

{{/*
"true" when every `helm upgrade` must roll the pods: image.restartOnUpgrade=always, or auto with a
mutable tag pulled Always (the same tag may name a newer image, but an unchanged pod template
would roll nothing and pull nothing).
*/}}
{{- define "tokenplace-relay.restartOnUpgrade" -}}
{{- $mode := default "auto" .Values.image.restartOnUpgrade }}
{{- if or (eq $mode "always") (and (eq $mode "auto") (include "tokenplace-relay.mutableTag" .) (eq (toString .Values.image.pullPolicy) "Always")) }}true{{ end }}
{{- end }}

{{/* A Kubernetes quantity (512Mi, 1Gi, 500M, 1073741824) in bytes; fails on forms it cannot read. */}}
{{- define "tokenplace-relay.bytes" -}}
{{- $q := toString . }}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q }}
{{- $suffix := trimPrefix $num $q }}
{{- if or (not $num) (not (hasKey $units $suffix)) }}
{{- fail (printf "cannot read the memory quantity %q (use a plain number of bytes or a k/M/G/T/Ki/Mi/Gi/Ti suffix)" $q) }}
{{- end }}
{{- mulf (float64 $num) (get $units $suffix) | floor | int64 }}
{{- end }}

{{/*
--max-old-space-size in MiB: relay.maxHeapMiB, else (null) derived from resources.limits.memory as
min(75 % of the limit, limit - 128 MiB), which leaves room outside the V8 heap (measured 63-80 MiB)
and for the young generation; 0, or no memory limit: V8's own default (half the cgroup limit).
*/}}
{{- define "tokenplace-relay.maxHeapMiB" -}}
{{- $limit := dig "limits" "memory" "" .Values.resources }}
{{- if not (kindIs "invalid" .Values.relay.maxHeapMiB) }}
{{- int .Values.relay.maxHeapMiB }}
{{- else if $limit }}
{{- $mib := div (include "tokenplace-relay.bytes" $limit | int64) 1048576 }}
{{- min (div (mul $mib 3) 4) (sub $mib 128) | max 0 }}
{{- else }}0{{ end }}
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

{{/*
The Ingress hosts as a JSON list: ingress.host, else the host of TOKENPLACE_RELAY_PUBLIC_URL given
in env (the URL the relay advertises is where it must be reachable), then ingress.extraHosts.
*/}}
{{- define "tokenplace-relay.ingressHosts" -}}
{{- $host := toString (default "" .Values.ingress.host) }}
{{- if not $host }}
{{- range list "TOKENPLACE_RELAY_PUBLIC_URL" "TOKEN_PLACE_RELAY_PUBLIC_URL" "RELAY_PUBLIC_URL" }}
{{- $url := include "tokenplace-relay.userEnvValue" (list $ .) }}
{{- if and $url (not $host) }}
{{- $host = (urlParse $url).hostname }}
{{- end }}
{{- end }}
{{- end }}
{{- $hosts := list }}
{{- with $host }}
{{- $hosts = append $hosts . }}
{{- end }}
{{- concat $hosts (default (list) .Values.ingress.extraHosts) | uniq | toJson }}
{{- end }}

{{/*
"true" when the Ingress renders: ingress.enabled true, or left null (the default) while a host is
known (ingress.host, Sugarkube's host=, or the public URL in env); false never renders it.
*/}}
{{- define "tokenplace-relay.ingressEnabled" -}}
{{- if kindIs "bool" .Values.ingress.enabled }}
{{- if .Values.ingress.enabled }}true{{ end }}
{{- else if include "tokenplace-relay.ingressHosts" . | fromJsonArray }}true{{ end }}
{{- end }}

{{/*
"true" when the chart runs its own Valkey: valkey.enabled true, or null (the default) with
state.store=redis and no state.redis.existingSecret (so `state.store: redis` works on its own).
*/}}
{{- define "tokenplace-relay.valkeyEnabled" -}}
{{- if kindIs "bool" .Values.valkey.enabled }}
{{- if .Values.valkey.enabled }}true{{ end }}
{{- else if and (eq .Values.state.store "redis") (not (include "tokenplace-relay.externalRedis" .)) }}true{{ end }}
{{- end }}

{{/* "true" when the values name a Redis outside the chart: a URL Secret, Sentinels or a Cluster. */}}
{{- define "tokenplace-relay.externalRedis" -}}
{{- if or .Values.state.redis.existingSecret .Values.state.redis.sentinel.hosts .Values.state.redis.cluster.nodes }}true{{ end }}
{{- end }}

{{- define "tokenplace-relay.valkeyName" -}}
{{- printf "%s-valkey" (include "tokenplace-relay.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tokenplace-relay.valkeyFullname" -}}
{{- printf "%s-valkey" (include "tokenplace-relay.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/* Valkey pods carry their own app name, so no relay selector (Service, Deployment, NetworkPolicy) matches them. */}}
{{- define "tokenplace-relay.valkeySelectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenplace-relay.valkeyName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tokenplace-relay.valkeyLabels" -}}
helm.sh/chart: {{ include "tokenplace-relay.chart" . }}
{{ include "tokenplace-relay.valkeySelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.valkey.image.tag | toString | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: state-store
app.kubernetes.io/part-of: tokenplace
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
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

{{- define "tokenplace-relay.gatewayKeyDir" -}}/etc/tokenplace/gateway-key{{- end }}

{{/*
The relay container's environment as a YAML list. Order: chart defaults, then `env` (a map or a
list of EnvVar), then `extraEnv`, then the variables the chart owns; a later entry with the same
name replaces an earlier one in place, so every name appears once. Setting a chart-owned name in
`env`/`extraEnv`, or a node/metrics/Redis secret as a literal value, fails the render.
*/}}
{{- define "tokenplace-relay.env" -}}
{{- $owned := list "TOKENPLACE_GATEWAY_ENABLED" "TOKENPLACE_GATEWAY_KEY_FILE" "RELAY_HOST" "RELAY_PORT" "TOKENPLACE_IMAGE_TAG" "TOKENPLACE_RELEASE_VERSION" "TOKENPLACE_CHART_VERSION" "TOKENPLACE_DEPLOY_ENV" "TOKENPLACE_RELAY_DRAIN_SECONDS" "TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS" "TOKENPLACE_METRICS_TOKEN" "TOKENPLACE_METRICS_DISABLED" "TOKENPLACE_RELAY_STATE_STORE" "TOKENPLACE_RELAY_REDIS_URL" "REDIS_URL" "VALKEY_PASSWORD" "TOKENPLACE_RELAY_REDIS_KEY_PREFIX" "TOKENPLACE_RELAY_REDIS_MIGRATE_FROM_PREFIX" "TOKENPLACE_RELAY_REDIS_PASSWORD" "TOKENPLACE_RELAY_REDIS_TLS" "TOKENPLACE_RELAY_REDIS_SENTINELS" "TOKENPLACE_RELAY_REDIS_SENTINEL_MASTER" "TOKENPLACE_RELAY_REDIS_SENTINEL_PASSWORD" "TOKENPLACE_RELAY_REDIS_SENTINEL_TLS" "TOKENPLACE_RELAY_REDIS_CLUSTER_NODES" "TOKENPLACE_RELAY_REDIS_WAIT_REPLICAS" "TOKENPLACE_RELAY_REDIS_WAIT_TIMEOUT_MS" "TOKENPLACE_RELAY_SERVER_TOKENS_FILE" "TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES" }}
{{- $secretNames := list "TOKENPLACE_RELAY_SERVER_TOKEN" "TOKEN_PLACE_RELAY_SERVER_TOKEN" "TOKEN_PLACE_RELAY_SERVER_TOKENS" "TOKENPLACE_RELAY_SERVER_TOKENS" "TOKEN_PLACE_OPERATOR_TOKEN" "TOKEN_PLACE_KEY_ROTATION_TOKEN" "PUBLIC_KEY_ROTATION_TOKEN" }}
{{- $defaults := list }}
{{- $defaults = append $defaults (dict "name" "TOKENPLACE_LOG_LEVEL" "value" (toString .Values.relay.logLevel)) }}
{{- if .Values.relay.trustProxy }}
{{- $defaults = append $defaults (dict "name" "TOKENPLACE_RELAY_TRUST_PROXY" "value" (toString .Values.relay.trustProxy)) }}
{{- end }}
{{- $defaults = append $defaults (dict "name" "TOKENPLACE_ENABLE_LEGACY_RELAY_ROUTES" "value" (ternary "1" "0" .Values.relay.legacyRoutes)) }}
{{- if and (include "tokenplace-relay.ingressEnabled" .) .Values.ingress.host }}
{{- $defaults = append $defaults (dict "name" "TOKENPLACE_RELAY_PUBLIC_URL" "value" (printf "https://%s" .Values.ingress.host)) }}
{{- end }}
{{- $heap := include "tokenplace-relay.maxHeapMiB" . | int }}
{{- $nodeOptions := list }}
{{- if gt $heap 0 }}
{{- $nodeOptions = append $nodeOptions (printf "--max-old-space-size=%d" $heap) }}
{{- end }}
{{- $semi := .Values.relay.maxSemiSpaceMiB | default 0 | int }}
{{- if gt $semi 0 }}
{{- $nodeOptions = append $nodeOptions (printf "--max-semi-space-size=%d" $semi) }}
{{- end }}
{{- if $nodeOptions }}
{{- $defaults = append $defaults (dict "name" "NODE_OPTIONS" "value" (join " " $nodeOptions)) }}
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
{{- if dig "limits" "memory" "" .Values.resources }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES" "valueFrom" (dict "resourceFieldRef" (dict "containerName" "relay" "resource" "limits.memory"))) }}
{{- end }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_STATE_STORE" "value" .Values.state.store) }}
{{- if eq .Values.state.store "redis" }}
{{- if include "tokenplace-relay.valkeyEnabled" . }}
{{- $address := printf "%s:%d/0" (include "tokenplace-relay.valkeyFullname" .) (int .Values.valkey.port) }}
{{- if .Values.valkey.auth.existingSecret }}
{{- $managed = append $managed (dict "name" "VALKEY_PASSWORD" "valueFrom" (dict "secretKeyRef" (dict "name" .Values.valkey.auth.existingSecret "key" .Values.valkey.auth.secretKey))) }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_URL" "value" (printf "redis://:$(VALKEY_PASSWORD)@%s" $address)) }}
{{- else }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_URL" "value" (printf "redis://%s" $address)) }}
{{- end }}
{{- else if .Values.state.redis.existingSecret }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_URL" "valueFrom" (dict "secretKeyRef" (dict "name" .Values.state.redis.existingSecret "key" .Values.state.redis.secretKey))) }}
{{- end }}
{{- $r := .Values.state.redis }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_KEY_PREFIX" "value" (toString $r.keyPrefix)) }}
{{- $migrate := toString $r.migrateFromPrefix }}
{{- if and (not $migrate) (eq (toString $r.keyPrefix) "{tokenplace}:") }}{{ $migrate = "tokenplace:" }}{{ end }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_MIGRATE_FROM_PREFIX" "value" (default "off" $migrate)) }}
{{- if $r.password.existingSecret }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_PASSWORD" "valueFrom" (dict "secretKeyRef" (dict "name" $r.password.existingSecret "key" $r.password.secretKey))) }}
{{- end }}
{{- if $r.tls }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_TLS" "value" "1") }}
{{- end }}
{{- if $r.sentinel.hosts }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_SENTINELS" "value" (join "," $r.sentinel.hosts)) }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_SENTINEL_MASTER" "value" (toString $r.sentinel.masterName)) }}
{{- if $r.sentinel.existingSecret }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_SENTINEL_PASSWORD" "valueFrom" (dict "secretKeyRef" (dict "name" $r.sentinel.existingSecret "key" $r.sentinel.secretKey))) }}
{{- end }}
{{- if $r.sentinel.tls }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_SENTINEL_TLS" "value" "1") }}
{{- end }}
{{- end }}
{{- if $r.cluster.nodes }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_CLUSTER_NODES" "value" (join "," $r.cluster.nodes)) }}
{{- end }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_WAIT_REPLICAS" "value" (toString (int $r.waitReplicas))) }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_REDIS_WAIT_TIMEOUT_MS" "value" (toString (int $r.waitTimeoutMs))) }}
{{- end }}
{{- if .Values.nodeAuth.existingSecret }}
{{- $managed = append $managed (dict "name" "TOKEN_PLACE_RELAY_SERVER_TOKENS" "valueFrom" (dict "secretKeyRef" (dict "name" .Values.nodeAuth.existingSecret "key" .Values.nodeAuth.secretKey))) }}
{{- end }}
{{- if .Values.nodeAuth.tokensFile.existingSecret }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_RELAY_SERVER_TOKENS_FILE" "value" (printf "%s/%s" (include "tokenplace-relay.nodeTokensDir" .) .Values.nodeAuth.tokensFile.secretKey)) }}
{{- end }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_GATEWAY_ENABLED" "value" (ternary "1" "0" .Values.gateway.enabled)) }}
{{- if .Values.gateway.keySecret.existingSecret }}
{{- $managed = append $managed (dict "name" "TOKENPLACE_GATEWAY_KEY_FILE" "value" (printf "%s/%s" (include "tokenplace-relay.gatewayKeyDir" .) .Values.gateway.keySecret.secretKey)) }}
{{- end }}
{{- if .Values.operator.existingSecret }}
{{- $managed = append $managed (dict "name" "TOKEN_PLACE_OPERATOR_TOKEN" "valueFrom" (dict "secretKeyRef" (dict "name" .Values.operator.existingSecret "key" .Values.operator.secretKey))) }}
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
{{- if and (eq .Values.state.store "redis") (not (include "tokenplace-relay.externalRedis" .)) (not (include "tokenplace-relay.valkeyEnabled" .)) }}
{{- fail "state.store=redis needs a Redis: leave valkey.enabled unset (the chart runs one), or set state.redis.existingSecret to an existing Secret holding the redis:// or rediss:// URL, or state.redis.sentinel.hosts, or state.redis.cluster.nodes" }}
{{- end }}
{{- if and .Values.state.redis.sentinel.hosts .Values.state.redis.cluster.nodes }}
{{- fail "state.redis.sentinel.hosts and state.redis.cluster.nodes exclude each other: the relay runs on Sentinel or on a Cluster" }}
{{- end }}
{{- if and .Values.state.redis.sentinel.hosts (not .Values.state.redis.sentinel.masterName) }}
{{- fail "state.redis.sentinel.hosts needs state.redis.sentinel.masterName: the name the Sentinels monitor (Bitnami valkey: sentinel.primarySet, default myprimary)" }}
{{- end }}
{{- if and .Values.state.redis.cluster.nodes (not (regexMatch "\\{[^{}]+\\}" (toString .Values.state.redis.keyPrefix))) }}
{{- fail "state.redis.cluster.nodes needs a hash tag in state.redis.keyPrefix (e.g. {tokenplace}:) so every key of the deployment is in one slot" }}
{{- end }}
{{- if and (eq .Values.state.store "redis") (gt (int .Values.state.redis.waitReplicas) 0) (ge (int .Values.state.redis.waitTimeoutMs) (int (dig "TOKENPLACE_RELAY_REDIS_COMMAND_TIMEOUT_MS" 2000 (default (dict) (and (kindIs "map" .Values.env) .Values.env))))) }}
{{- fail "state.redis.waitTimeoutMs must be less than the Redis command timeout (TOKENPLACE_RELAY_REDIS_COMMAND_TIMEOUT_MS, 2000 by default)" }}
{{- end }}
{{- if and (include "tokenplace-relay.valkeyEnabled" .) (ne .Values.state.store "redis") }}
{{- fail "valkey.enabled=true but state.store is memory: set state.store=redis so the relay uses it" }}
{{- end }}
{{- if and (include "tokenplace-relay.valkeyEnabled" .) (include "tokenplace-relay.externalRedis" .) }}
{{- fail "valkey.enabled=true and an external Redis (state.redis.existingSecret, sentinel.hosts or cluster.nodes) are both set: use the chart's Valkey or an external Redis, not both" }}
{{- end }}
{{- if and (include "tokenplace-relay.ingressEnabled" .) .Values.ingress.tls.enabled (not (include "tokenplace-relay.ingressHosts" . | fromJsonArray)) }}
{{- fail "ingress.tls.enabled=true needs ingress.host (or TOKENPLACE_RELAY_PUBLIC_URL in env)" }}
{{- end }}
{{- $heap := include "tokenplace-relay.maxHeapMiB" . | int }}
{{- $derived := and (kindIs "invalid" .Values.relay.maxHeapMiB) (dig "limits" "memory" "" .Values.resources) }}
{{- if and (or $derived (gt $heap 0)) (lt $heap 128) }}
{{- fail (printf "the relay's heap would be %d MiB (resources.limits.memory %v, relay.maxHeapMiB %v): give it at least 256Mi of memory (128 MiB of heap)" $heap (dig "limits" "memory" "unset" .Values.resources) .Values.relay.maxHeapMiB) }}
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
