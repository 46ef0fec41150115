{{- define "matih-service.name" -}}
{{- default .Release.Name .Values.nameOverride -}}
{{- end -}}

{{- define "matih-service.labels" -}}
{{- with .Values.labels }}{{ toYaml . }}
{{ end -}}
app.kubernetes.io/name: {{ include "matih-service.name" . }}
app.kubernetes.io/managed-by: Helm
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
