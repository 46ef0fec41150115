{{- define "matih-ingress-nginx.selector" -}}
app.kubernetes.io/name: ingress-nginx
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "matih-ingress-nginx.labels" -}}
{{- with .Values.labels }}{{ toYaml . }}
{{ end -}}
app.kubernetes.io/name: ingress-nginx
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: Helm
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* Cluster-scoped names carry the namespace: one controller per tenant namespace. */}}
{{- define "matih-ingress-nginx.clusterName" -}}
{{ .Release.Name }}-{{ .Release.Namespace }}
{{- end -}}
