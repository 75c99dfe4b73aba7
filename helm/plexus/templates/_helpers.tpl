{{/*
Selector labels: stable for the life of a release (a DaemonSet selector is immutable).
*/}}
{{- define "plexus.selectorLabels" -}}
app.kubernetes.io/name: plexus
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Common labels for every object the chart renders.
*/}}
{{- define "plexus.labels" -}}
{{ include "plexus.selectorLabels" . }}
app.kubernetes.io/part-of: plexus
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
The agent image reference.
*/}}
{{- define "plexus.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end -}}

{{/*
Port the agent answers /healthz on (the kubelet probes): the Prometheus port when metrics are served there, else the
health-addr port. Not to be confused with .Values.healthPort, the node-to-node health endpoint (health-port).
*/}}
{{- define "plexus.healthzPort" -}}
{{- if .Values.prometheus.enabled -}}
{{ .Values.prometheus.port }}
{{- else -}}
9879
{{- end -}}
{{- end -}}

{{/*
Fail early on value combinations that render but cannot work.
*/}}
{{- define "plexus.validate" -}}
{{- if and .Values.kubeProxyReplacement (not .Values.k8sServiceHost) -}}
{{- fail "kubeProxyReplacement=true needs k8sServiceHost: without kube-proxy the kubernetes Service ClusterIP is not reachable before the agent runs" -}}
{{- end -}}
{{- if eq (toString .Values.tunnelProtocol) "geneve" -}}
{{- fail "tunnelProtocol=geneve: Geneve is not supported on this build (the kernel has no Geneve driver); use tunnelProtocol=vxlan" -}}
{{- end -}}
{{- if and .Values.autoDirectNodeRoutes (ne (toString .Values.routingMode) "native") -}}
{{- fail (printf "autoDirectNodeRoutes=true needs routingMode=native (routingMode is %s): direct node routes replace the tunnel, as in Cilium" (toString .Values.routingMode)) -}}
{{- end -}}
{{- end -}}
