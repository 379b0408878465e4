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

{{- /* Where the platform's XynergyServices go: the namespace the operator watches. */ -}}
{{- define "xynergy.platformNamespace" -}}
{{- .Values.watchNamespace | default .Release.Namespace -}}
{{- end -}}

{{- define "xynergy.gatewayAccount" -}}
{{- printf "%s-gateway" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* The platform gateway runs in the cluster (its spec's backend, else platform.backend). */ -}}
{{- define "xynergy.gatewayInCluster" -}}
{{- $gw := .Values.platform.services.gateway -}}
{{- if and $gw.enabled (eq (($gw.spec | default dict).backend | default .Values.platform.backend) "kubernetes") -}}
true
{{- end -}}
{{- end -}}

{{- /* What the gateway needs beyond its image (values: platform.gateway), under its spec:
the ServiceAccount of templates/gateway.yaml, the key Secrets as files (a rotation needs no
restart), the route source, Redis, the trusted proxies and the CORS origins (both lists always
rendered: empty overrides the gateway's default pattern, so no origin is allowed). */ -}}
{{- define "xynergy.gatewaySpec" -}}
{{- $gw := .Values.platform.gateway -}}
kubernetes:
  serviceAccountName: {{ include "xynergy.gatewayAccount" . }}
volumes:
- name: internal-key
  mountPath: /var/run/xynergy/internal
  secret:
    secretName: {{ $gw.internalKeySecret.name | quote }}
    items:
    - {key: {{ $gw.internalKeySecret.key | quote }}, path: key}
{{- if $gw.jwtSecret.name }}
- name: jwt-secret
  mountPath: /var/run/xynergy/jwt
  secret:
    secretName: {{ $gw.jwtSecret.name | quote }}
    items:
    - {key: {{ $gw.jwtSecret.key | quote }}, path: secret}
{{- end }}
env:
- {name: XYNERGY_GATEWAY_ROUTE_SOURCE, value: cluster}
{{- with .Values.watchNamespace }}
- {name: XYNERGY_GATEWAY_CLUSTER_NAMESPACE, value: {{ . | quote }}}
{{- end }}
- {name: XYNERGY_GATEWAY_REDIS_URL, value: {{ $gw.redisUrl | quote }}}
- {name: XYNERGY_GATEWAY_TRUSTED_PROXIES, value: {{ toJson $gw.trustedProxies | quote }}}
- {name: XYNERGY_GATEWAY_CORS_ORIGINS, value: {{ toJson $gw.cors.allowedOrigins | quote }}}
- {name: XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS, value: {{ toJson $gw.cors.allowedOriginPatterns | quote }}}
- {name: XYNERGY_INTERNAL_SIGNING_KEY_FILE, value: /var/run/xynergy/internal/key}
{{- if $gw.jwtSecret.name }}
- {name: JWT_SECRET_FILE, value: /var/run/xynergy/jwt/secret}
{{- end }}
healthCheck:
  path: /readyz
{{- end -}}
