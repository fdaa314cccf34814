{{/*
A role's PodDisruptionBudget: voluntary evictions (node drains, cluster upgrades) take its
pods a few at a time instead of all at once. Pass (dict "root" $ "role" "web").

A budget that keeps every pod blocks drains forever: a Deployment replaces an evicted pod
only after the eviction, so no eviction is ever allowed. Hence maxUnavailable (1 by default),
which never blocks; no budget for a fixed single replica, which it could not protect; and a
minAvailable refused when it would keep every pod of the role at its fewest (replicaCount, or
an autoscaler's minReplicas, at least 1). Kubernetes rounds a percentage of pods up.
*/}}
{{- define "telemetry.pdb" -}}
{{- $values := index .root.Values .role -}}
{{- $pdb := $values.pdb -}}
{{- $autoscaled := ne (dig "autoscaling" "mode" "none" $values) "none" -}}
{{- $fewest := int $values.replicaCount -}}
{{- if $autoscaled -}}
{{- $fewest = max 1 (int $values.autoscaling.minReplicas) -}}
{{- end -}}
{{- if and $values.enabled $pdb.enabled (or $autoscaled (gt $fewest 1)) -}}
{{- $minAvailable := toString $pdb.minAvailable -}}
{{- $maxUnavailable := toString $pdb.maxUnavailable -}}
{{- if and $minAvailable $maxUnavailable -}}
{{- fail (printf "%s.pdb: set minAvailable or maxUnavailable, not both" .role) -}}
{{- end -}}
{{- if $minAvailable -}}
{{- $kept := int $minAvailable -}}
{{- if hasSuffix "%" $minAvailable -}}
{{- $kept = div (add (mul (int (trimSuffix "%" $minAvailable)) $fewest) 99) 100 -}}
{{- end -}}
{{- if ge $kept $fewest -}}
{{- fail (printf "%s.pdb.minAvailable=%s leaves no pod to evict when the role runs its fewest pods (%d), so node drains would hang: lower it, or use maxUnavailable" .role $minAvailable $fewest) -}}
{{- end -}}
{{- end -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "telemetry.fullname" .root }}-{{ .role }}
  labels:
    {{- include "telemetry.labels" (dict "root" .root "component" .role) | nindent 4 }}
spec:
  {{- if $minAvailable }}
  minAvailable: {{ ternary ($minAvailable | quote) $minAvailable (hasSuffix "%" $minAvailable) }}
  {{- else }}
  maxUnavailable: {{ ternary ($maxUnavailable | quote) (default "1" $maxUnavailable) (hasSuffix "%" $maxUnavailable) }}
  {{- end }}
  # Pods that are not ready serve nothing (say, web while the database is down): a drain may
  # evict them without waiting for them to become ready.
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "telemetry.selectorLabels" (dict "root" .root "component" .role) | nindent 6 }}
{{- end -}}
{{- end -}}
