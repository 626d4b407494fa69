{{- define "wan-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wan-exporter.fullname" -}}
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

{{- define "wan-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wan-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wan-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: exporter
{{- end }}

{{- define "wan-exporter.labels" -}}
helm.sh/chart: {{ include "wan-exporter.chart" . }}
app.kubernetes.io/name: {{ include "wan-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wan-exporter
{{- end }}

{{- define "wan-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wan-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "wan-exporter.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The models volume source: a PVC when named, else the node directory. */}}
{{- define "wan-exporter.modelsVolume" -}}
{{- if .Values.models.existingClaim }}
persistentVolumeClaim:
  claimName: {{ .Values.models.existingClaim }}
  readOnly: true
{{- else }}
hostPath:
  path: {{ .Values.models.hostPath }}
  type: Directory
{{- end }}
{{- end }}

{{/* The exporter's config.yml: config values, with the kubernetes: section from the chart's values. */}}
{{- define "wan-exporter.config" -}}
{{- $kube := dict "pod_resources" (dict "enabled" .Values.podResources.enabled "socket" "/var/lib/kubelet/pod-resources/kubelet.sock" "publish_pods" .Values.podResources.publishPods) }}
{{- if .Values.jobMode.enabled }}
{{- $jobs := dict "enabled" true "image" (include "wan-exporter.image" .) "priority_class" .Values.jobMode.priorityClass.name "ttl_seconds_after_finished" .Values.jobMode.ttlSecondsAfterFinished "pending_timeout" .Values.jobMode.pendingTimeout "token_file" "/var/run/secrets/wan-exporter/probe/token" "token_secret" .Values.jobMode.tokenSecret "config_map" (include "wan-exporter.fullname" .) "models_volume" (include "wan-exporter.modelsVolume" . | fromYaml) }}
{{- with .Values.jobMode.reportUrl }}
{{- $_ := set $jobs "report_url" . }}
{{- end }}
{{- with .Values.jobMode.resources }}
{{- $_ := set $jobs "resources" . }}
{{- end }}
{{- if .Values.web.tls.existingSecret }}
{{- $_ := set $jobs "report_ca_secret" .Values.web.tls.existingSecret }}
{{- end }}
{{- $_ := set $kube "jobs" $jobs }}
{{- end }}
{{- $cfg := deepCopy .Values.config }}
{{- $_ := set $cfg "kubernetes" $kube }}
{{- toYaml $cfg }}
{{- end }}
