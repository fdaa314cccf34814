{{/*
The two worker roles, streamer and collector, are Celery workers of the same shape on
different queues. Pass (dict "root" $ "role" "collector" "queue" "collect").
*/}}

{{/* Seconds worker-ping.sh waits for the worker's reply; the probe must allow more. */}}
{{- define "telemetry.worker.pingSeconds" -}}10{{- end -}}

{{- define "telemetry.worker.probes" -}}
{{- $values := index .root.Values .role -}}
{{- $check := list "/app/docker/worker-alive.sh" (toString $values.heartbeatMaxAge) -}}
{{- if eq $values.pool "solo" -}}
# A solo worker runs its task inside its event loop, so it cannot answer a ping while
# busy: it touches a heartbeat file from that loop (ingest/heartbeat.py) instead, and is
# dead when the file is older than any task takes.
{{- else -}}
{{- $check = list "/app/docker/worker-ping.sh" (include "telemetry.worker.pingSeconds" .root) -}}
# The {{ $values.pool }} pool answers remote control while tasks run: ping this pod's node.
{{- end }}
{{- range $probe := list "startupProbe" "readinessProbe" "livenessProbe" }}
{{ $probe }}:
  exec:
    command: {{ $check | toJson }}
  {{- include "telemetry.probe.timings" (dict "root" $.root "probe" (index $values $probe) "startSeconds" 120) | nindent 2 }}
{{- end }}
{{- end -}}

{{/* CSV volumes of streamers: the PVC and the small-file ConfigMap, when sources use them. */}}
{{- define "telemetry.worker.csvFrom" -}}
{{- $from := list -}}
{{- if eq .role "streamer" -}}
{{- range .root.Values.csv.sources -}}
{{- $from = append $from .from -}}
{{- end -}}
{{- end -}}
{{- $from | uniq | toJson -}}
{{- end -}}

{{- define "telemetry.worker.deployment" -}}
{{- $root := .root -}}
{{- $values := index $root.Values .role -}}
{{- $from := include "telemetry.worker.csvFrom" . | fromJsonArray -}}
{{- $fullname := include "telemetry.fullname" $root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}-{{ .role }}
  labels:
    {{- include "telemetry.labels" (dict "root" $root "component" .role) | nindent 4 }}
spec:
  {{- if eq $values.autoscaling.mode "none" }}
  replicas: {{ $values.replicaCount }}
  {{- else }}
  # No replica count: the {{ $values.autoscaling.mode | upper }} autoscaler owns it.
  {{- end }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "telemetry.selectorLabels" (dict "root" $root "component" .role) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "telemetry.labels" (dict "root" $root "component" .role) | nindent 8 }}
      annotations:
        {{- include "telemetry.checksums" $root | nindent 8 }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "telemetry.podSpec.common" $root | nindent 6 }}
      # SIGTERM is Celery's warm shutdown: the task in hand finishes first.
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
      {{- if and (eq .role "streamer") $root.Values.csv.sources }}
      # Each source of this site is registered once (add_source --if-missing), from a pod that
      # sees the file where the streamers will read it.
      initContainers:
        {{- range $root.Values.csv.sources }}
        - name: source-{{ .name }}
          {{- include "telemetry.container.common" $root | nindent 10 }}
          args:
            - add-source
            - {{ .name | quote }}
            - {{ include "telemetry.source.location" (dict "root" $root "source" .) | quote }}
            - --site={{ $root.Values.site }}
            - --batch-size={{ .batchSize | default 1000 }}
            - --interval={{ .interval | default 5 }}
            - --pace={{ .pace | default "paced" }}
            - --timestamp-mode={{ .timestampMode | default "processing" }}
            - --shards={{ .shards | default 1 }}
            {{- if .loop }}
            - --loop
            {{- end }}
            - --if-missing
          {{- include "telemetry.container.env" $root | nindent 10 }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          volumeMounts:
            {{- include "telemetry.volumeMounts.common" $root | nindent 12 }}
            {{- with include "telemetry.worker.csvMounts" (dict "root" $root "from" $from) }}
            {{- . | trim | nindent 12 }}
            {{- end }}
        {{- end }}
      {{- end }}
      containers:
        - name: {{ .role }}
          {{- include "telemetry.container.common" $root | nindent 10 }}
          args: [{{ .role | quote }}]
          {{- include "telemetry.container.env" $root | nindent 10 }}
            # The worker's shape, read by docker/entrypoint.sh.
            - name: WORKER_QUEUES
              value: {{ .queue | quote }}
            - name: WORKER_POOL
              value: {{ $values.pool | quote }}
            {{- if ne $values.pool "solo" }}
            - name: WORKER_CONCURRENCY
              value: {{ $values.concurrency | quote }}
            {{- end }}
          {{- include "telemetry.worker.probes" . | nindent 10 }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          volumeMounts:
            {{- include "telemetry.volumeMounts.common" $root | nindent 12 }}
            {{- with include "telemetry.worker.csvMounts" (dict "root" $root "from" $from) }}
            {{- . | trim | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "telemetry.volumes.common" $root | nindent 8 }}
        {{- if has "pvc" $from }}
        - name: csv-pvc
          persistentVolumeClaim:
            claimName: {{ $root.Values.csv.pvc.claimName }}
            readOnly: true
        {{- end }}
        {{- if has "configMap" $from }}
        - name: csv-configmap
          configMap:
            name: {{ $fullname }}-csv
        {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{- define "telemetry.worker.csvMounts" -}}
{{- if has "pvc" .from }}
- name: csv-pvc
  mountPath: {{ .root.Values.csv.pvc.mountPath }}
  readOnly: true
{{- end }}
{{- if has "configMap" .from }}
- name: csv-configmap
  mountPath: {{ .root.Values.csv.configMap.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The role's autoscaler: an HPA on CPU or a KEDA ScaledObject on its queue, never both. */}}
{{- define "telemetry.worker.autoscaling" -}}
{{- $root := .root -}}
{{- $values := index $root.Values .role -}}
{{- $scaling := $values.autoscaling -}}
{{- $fullname := include "telemetry.fullname" $root -}}
{{- if eq $scaling.mode "hpa" -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $fullname }}-{{ .role }}
  labels:
    {{- include "telemetry.labels" (dict "root" $root "component" .role) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $fullname }}-{{ .role }}
  minReplicas: {{ $scaling.minReplicas }}
  maxReplicas: {{ $scaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $scaling.targetCPUUtilizationPercentage }}
{{- else if eq $scaling.mode "keda" -}}
{{- $broker := include "telemetry.secretRef.broker" $root | fromJson -}}
# Follows the backlog: Celery's Redis transport keeps the queue {{ .queue }} as a list of that
# name in database {{ $root.Values.broker.database }}; KEDA sizes the role to its length.
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $fullname }}-{{ .role }}
  labels:
    {{- include "telemetry.labels" (dict "root" $root "component" .role) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $fullname }}-{{ .role }}
  minReplicaCount: {{ $scaling.minReplicas }}
  maxReplicaCount: {{ $scaling.maxReplicas }}
  pollingInterval: {{ $scaling.pollingInterval }}
  cooldownPeriod: {{ $scaling.cooldownPeriod }}
  triggers:
    - type: redis
      metadata:
        address: {{ printf "%s:%v" (include "telemetry.broker.host" $root) $root.Values.broker.port | quote }}
        listName: {{ .queue | quote }}
        listLength: {{ $scaling.listLength | quote }}
        activationListLength: {{ $scaling.activationListLength | quote }}
        databaseIndex: {{ $root.Values.broker.database | quote }}
        enableTLS: {{ $root.Values.broker.tls.enabled | quote }}
      {{- if or $broker.name (and $root.Values.broker.tls.enabled $root.Values.broker.tls.caSecret) }}
      authenticationRef:
        name: {{ $fullname }}-broker
      {{- end }}
{{- end -}}
{{- end -}}
