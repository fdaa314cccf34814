{{/* Names, labels and the pieces every role's pod shares. */}}

{{- define "telemetry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "telemetry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; pass (dict "root" $ "component" "web"). */}}
{{- define "telemetry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "telemetry.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: telemetry-pipeline
{{- end -}}

{{- define "telemetry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "telemetry.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "telemetry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "telemetry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "telemetry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The queue a site's streamers consume; mirrors ingest.models.stream_queue_for_site. */}}
{{- define "telemetry.streamQueue" -}}
{{- if eq .Values.site "default" -}}stream{{- else -}}stream.{{ .Values.site }}{{- end -}}
{{- end -}}

{{/* --- Database and broker: bundled or external --------------------------------------- */}}

{{- define "telemetry.database.host" -}}
{{- if .Values.database.host -}}
{{- .Values.database.host -}}
{{- else if .Values.postgresql.enabled -}}
{{- printf "%s-postgresql" (include "telemetry.fullname" .) -}}
{{- else -}}
{{- fail "database.host is required when postgresql.enabled is false (the bundled PostgreSQL is off)" -}}
{{- end -}}
{{- end -}}

{{- define "telemetry.broker.host" -}}
{{- if .Values.broker.host -}}
{{- .Values.broker.host -}}
{{- else if .Values.redis.enabled -}}
{{- printf "%s-redis" (include "telemetry.fullname" .) -}}
{{- else -}}
{{- fail "broker.host is required when redis.enabled is false (the bundled Redis is off)" -}}
{{- end -}}
{{- end -}}

{{/* The broker URL without its password, which comes from a Secret (REDIS_PASSWORD). */}}
{{- define "telemetry.broker.url" -}}
{{- $scheme := ternary "rediss" "redis" .Values.broker.tls.enabled -}}
{{- printf "%s://%s:%v/%v" $scheme (include "telemetry.broker.host" .) .Values.broker.port .Values.broker.database -}}
{{- end -}}

{{/*
Where each secret comes from: (dict "name" SECRET "key" KEY), or an empty dict when there is
none (an external database or Redis without a password).
*/}}
{{- define "telemetry.secretRef.django" -}}
{{- if .Values.django.existingSecret -}}
{{- dict "name" .Values.django.existingSecret "key" .Values.django.existingSecretKey | toJson -}}
{{- else -}}
{{- dict "name" (include "telemetry.fullname" .) "key" "django-secret-key" | toJson -}}
{{- end -}}
{{- end -}}

{{- define "telemetry.secretRef.database" -}}
{{- if .Values.database.existingSecret -}}
{{- dict "name" .Values.database.existingSecret "key" .Values.database.existingSecretPasswordKey | toJson -}}
{{- else if or .Values.database.password (and .Values.postgresql.enabled (not .Values.database.host)) -}}
{{- dict "name" (include "telemetry.fullname" .) "key" "db-password" | toJson -}}
{{- else -}}
{{- dict | toJson -}}
{{- end -}}
{{- end -}}

{{- define "telemetry.secretRef.broker" -}}
{{- if .Values.broker.existingSecret -}}
{{- dict "name" .Values.broker.existingSecret "key" .Values.broker.existingSecretPasswordKey | toJson -}}
{{- else if or .Values.broker.password (and .Values.redis.enabled (not .Values.broker.host)) -}}
{{- dict "name" (include "telemetry.fullname" .) "key" "redis-password" | toJson -}}
{{- else -}}
{{- dict | toJson -}}
{{- end -}}
{{- end -}}

{{/*
A value of the chart's own Secret: the one given, else the one already stored in the cluster
(so generated passwords survive upgrades), else a new random one.
Pass (dict "root" $ "key" "db-password" "value" .Values.database.password). Generated values
are 64 characters: the production settings refuse a Django secret key under 50.
*/}}
{{- define "telemetry.secretValue" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "telemetry.fullname" .root) -}}
{{- if and $existing (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 64 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* --- Checks that values.schema.json cannot express ------------------------------------ */}}

{{- define "telemetry.validate" -}}
{{- if and .Values.web.metrics.serviceMonitor.enabled .Values.django.apiRequireToken (not .Values.web.metrics.serviceMonitor.tokenSecret.name) -}}
{{- fail "django.apiRequireToken makes /metrics require a token: set web.metrics.serviceMonitor.tokenSecret.name to a Secret holding one (manage.py create_token)" -}}
{{- end -}}
{{- if and .Values.postgresql.enabled .Values.database.host -}}
{{- fail "database.host names an external PostgreSQL: set postgresql.enabled=false too (or clear database.host to use the bundled one)" -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.broker.host -}}
{{- fail "broker.host names an external Redis: set redis.enabled=false too (or clear broker.host to use the bundled one)" -}}
{{- end -}}
{{- if and .Values.redis.enabled (ne .Values.redis.tls.enabled .Values.broker.tls.enabled) -}}
{{- fail "with the bundled Redis, broker.tls.enabled must equal redis.tls.enabled: a TLS-only Redis needs TLS clients, a plain one plain clients" -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.redis.tls.enabled (not .Values.redis.tls.certificateSecret) -}}
{{- fail "redis.tls.enabled needs redis.tls.certificateSecret (tls.crt, tls.key)" -}}
{{- end -}}
{{- if and .Values.postgresql.enabled .Values.postgresql.tls.enabled (not .Values.postgresql.tls.certificateSecret) -}}
{{- fail "postgresql.tls.enabled needs postgresql.tls.certificateSecret (tls.crt, tls.key)" -}}
{{- end -}}
{{- if and .Values.csv.sources (not .Values.streamer.enabled) -}}
{{- fail "csv.sources are registered by this release's streamers: enable streamer, or list the sources in the release that runs the streamers of their site" -}}
{{- end -}}
{{- range $role := list "streamer" "collector" -}}
{{- $scaling := (index $.Values $role).autoscaling -}}
{{- if gt (int $scaling.minReplicas) (int $scaling.maxReplicas) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%v) is above maxReplicas (%v)" $role $scaling.minReplicas $scaling.maxReplicas) -}}
{{- end -}}
{{- if and (eq $scaling.mode "hpa") (lt (int $scaling.minReplicas) 1) -}}
{{- fail (printf "%s.autoscaling.minReplicas must be at least 1 with mode hpa (only KEDA scales to zero)" $role) -}}
{{- end -}}
{{- $values := index $.Values $role -}}
{{- $pingSeconds := include "telemetry.worker.pingSeconds" $ | int -}}
{{- if ne $values.pool "solo" -}}
{{- range $probe := list "startupProbe" "readinessProbe" "livenessProbe" -}}
{{- if lt (int (index $values $probe).timeoutSeconds) (add $pingSeconds 5) -}}
{{- fail (printf "%s.%s.timeoutSeconds must be at least %d with the %s pool: its probe starts a Celery client and waits up to %d s for the worker's reply" $role $probe (add $pingSeconds 5) $values.pool $pingSeconds) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $names := list -}}
{{- range .Values.csv.sources -}}
{{- if has .name $names -}}
{{- fail (printf "csv.sources: the name %q is used twice" .name) -}}
{{- end -}}
{{- $names = append $names .name -}}
{{- if and (eq .from "pvc") (not $.Values.csv.pvc.claimName) -}}
{{- fail (printf "csv.sources %q reads from a PVC: set csv.pvc.claimName" .name) -}}
{{- end -}}
{{- if and (eq .from "configMap") (not (hasKey $.Values.csv.configMap.files .file)) -}}
{{- fail (printf "csv.sources %q: %q is not a key of csv.configMap.files" .name .file) -}}
{{- end -}}
{{- if and (eq .from "url") (not (regexMatch "^https?://" .file)) -}}
{{- fail (printf "csv.sources %q: from=url needs an http(s) URL, not %q" .name .file) -}}
{{- end -}}
{{- if and (eq .from "url") (gt (int (default 1 .shards)) 1) -}}
{{- fail (printf "csv.sources %q: a URL is streamed as one shard" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The location add_source is given for a source: a path in the pod, or the URL. */}}
{{- define "telemetry.source.location" -}}
{{- $csv := .root.Values.csv -}}
{{- if eq .source.from "pvc" -}}
{{- printf "%s/%s" (trimSuffix "/" $csv.pvc.mountPath) (trimPrefix "/" .source.file) -}}
{{- else if eq .source.from "configMap" -}}
{{- printf "%s/%s" (trimSuffix "/" $csv.configMap.mountPath) .source.file -}}
{{- else -}}
{{- .source.file -}}
{{- end -}}
{{- end -}}

{{/* --- Pod pieces ---------------------------------------------------------------------- */}}

{{/* Checksums of the configuration, so a change rolls every pod that reads it. */}}
{{- define "telemetry.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}

{{/*
A probe's timings from a role's values. A failureThreshold of 0 (start-up probes only, by the
schema) becomes as many periods as cover the wait for the migration hook
(migrations.waitTimeout) plus `startSeconds`, the role's own start.
Pass (dict "root" $ "probe" .Values.web.startupProbe "startSeconds" 60).
*/}}
{{- define "telemetry.probe.timings" -}}
{{- $period := int .probe.periodSeconds -}}
{{- $failures := int .probe.failureThreshold -}}
{{- if eq $failures 0 -}}
{{- $failures = div (add .root.Values.migrations.waitTimeout .startSeconds $period -1) $period -}}
{{- end -}}
initialDelaySeconds: {{ .probe.initialDelaySeconds }}
periodSeconds: {{ $period }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ $failures }}
{{- end -}}

{{- define "telemetry.podSpec.common" -}}
serviceAccountName: {{ include "telemetry.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Secrets as environment variables, by reference only. */}}
{{- define "telemetry.container.secretEnv" -}}
{{- $django := include "telemetry.secretRef.django" . | fromJson -}}
- name: DJANGO_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $django.name }}
      key: {{ $django.key }}
{{- $database := include "telemetry.secretRef.database" . | fromJson }}
{{- if $database.name }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $database.name }}
      key: {{ $database.key }}
{{- end }}
{{- $broker := include "telemetry.secretRef.broker" . | fromJson }}
{{- if $broker.name }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $broker.name }}
      key: {{ $broker.key }}
{{- end }}
{{- end -}}

{{/* Configuration from the ConfigMap, secrets by reference. */}}
{{- define "telemetry.container.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "telemetry.fullname" . }}
env:
  {{- include "telemetry.container.secretEnv" . | nindent 2 }}
{{- end -}}

{{- define "telemetry.container.common" -}}
image: {{ include "telemetry.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{- define "telemetry.volumeMounts.common" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.broker.tls.caSecret }}
- name: broker-ca
  mountPath: /etc/telemetry/broker-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "telemetry.volumes.common" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if .Values.broker.tls.caSecret }}
- name: broker-ca
  secret:
    secretName: {{ .Values.broker.tls.caSecret }}
    items:
      - key: {{ .Values.broker.tls.caSecretKey }}
        path: ca.crt
{{- end }}
{{- end -}}
