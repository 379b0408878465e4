{{/* Names and labels shared by every template. */}}
{{- define "xynergy.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "xynergy.selectorLabels" -}}
app.kubernetes.io/name: xynergy-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "xynergy.labels" -}}
{{ include "xynergy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "xynergy.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{ printf "%s@%s" $repo .Values.image.digest }}
{{- else -}}
{{ printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion) }}
{{- end -}}
{{- end -}}

{{- define "xynergy.peeringName" -}}
{{- .Values.peering.name | default (include "xynergy.fullname" .) -}}
{{- end -}}
