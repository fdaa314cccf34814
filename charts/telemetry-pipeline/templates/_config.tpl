{{/*
Non-secret configuration as NAME: "value" lines: the ConfigMap's data, and the migration
hook's environment (a pre-upgrade hook runs before the ConfigMap is updated).
*/}}
{{- define "telemetry.config" -}}
DJANGO_ALLOWED_HOSTS: {{ include "telemetry.allowedHosts" . | quote }}
LOG_LEVEL: {{ .Values.django.logLevel | quote }}
API_REQUIRE_TOKEN: {{ ternary "1" "0" .Values.django.apiRequireToken | quote }}
DB_HOST: {{ include "telemetry.database.host" . | quote }}
DB_PORT: {{ .Values.database.port | quote }}
DB_NAME: {{ .Values.database.name | quote }}
DB_USER: {{ .Values.database.user | quote }}
{{- with .Values.database.sslMode }}
DB_SSL_MODE: {{ . | quote }}
{{- end }}
REDIS_URL: {{ include "telemetry.broker.url" . | quote }}
{{- if .Values.broker.tls.caSecret }}
REDIS_TLS_CA_FILE: /etc/telemetry/broker-ca/ca.crt
{{- end }}
CELERY_VISIBILITY_TIMEOUT: {{ .Values.pipeline.visibilityTimeout | quote }}
MAX_OUTSTANDING_CHUNKS: {{ .Values.pipeline.maxOutstandingChunks | quote }}
COLLECT_QUEUE_MAX_DEPTH: {{ .Values.pipeline.collectQueueMaxDepth | quote }}
REPUBLISH_AFTER_SECONDS: {{ .Values.pipeline.republishAfterSeconds | quote }}
MAX_CHUNK_ATTEMPTS: {{ .Values.pipeline.maxChunkAttempts | quote }}
RETRY_BACKOFF_MAX_SECONDS: {{ .Values.pipeline.retryBackoffMaxSeconds | quote }}
RETENTION_DAYS: {{ .Values.pipeline.retentionDays | quote }}
LEDGER_RETENTION_DAYS: {{ .Values.pipeline.ledgerRetentionDays | quote }}
PARTITION_DAYS: {{ .Values.pipeline.partitionDays | quote }}
PARTITIONS_AHEAD_DAYS: {{ .Values.pipeline.partitionsAheadDays | quote }}
PUSH_MAX_BODY_BYTES: {{ .Values.pipeline.pushMaxBodyBytes | int64 | quote }}
PUSH_KEEP_JOB_INSTANCE_LABELS: {{ ternary "1" "0" .Values.pipeline.pushKeepJobInstanceLabels | quote }}
{{- /* Streamers read files only under these: the image's data and the chart's CSV mounts. */}}
STREAM_SOURCE_DIRS: {{ list "/app/data" .Values.csv.pvc.mountPath .Values.csv.configMap.mountPath | join "," | quote }}
WAIT_FOR_MIGRATIONS: "1"
WAIT_FOR_MIGRATIONS_TIMEOUT: {{ .Values.migrations.waitTimeout | quote }}
TELEMETRY_RUN_DIR: /tmp/telemetry
{{- range $name, $value := .Values.extraEnv }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/*
DJANGO_ALLOWED_HOSTS: localhost (probes), the web Service's names, the ingress hosts and
django.allowedHosts. Web pods add their own address (web/deployment.yaml).
*/}}
{{- define "telemetry.allowedHosts" -}}
{{- $fullname := include "telemetry.fullname" . -}}
{{- $hosts := list "localhost" -}}
{{- if .Values.web.enabled -}}
{{- $hosts = concat $hosts (list (printf "%s-web" $fullname) (printf "%s-web.%s.svc" $fullname .Release.Namespace)) -}}
{{- end -}}
{{- if .Values.web.ingress.enabled -}}
{{- $hosts = concat $hosts .Values.web.ingress.hosts -}}
{{- end -}}
{{- $hosts = concat $hosts .Values.django.allowedHosts | uniq -}}
{{- join "," $hosts -}}
{{- end -}}
