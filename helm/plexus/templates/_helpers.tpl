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
kubeProxyReplacement as Cilium takes it: true/false or the strings "true"/"false". "true" when on, "" when off, so
that `if (include "plexus.kubeProxyReplacement" .)` works; a plain `if .Values.kubeProxyReplacement` would take the
string "false" as on.
*/}}
{{- define "plexus.kubeProxyReplacement" -}}
{{- if eq (toString .Values.kubeProxyReplacement) "true" -}}
true
{{- end -}}
{{- end -}}

{{/*
k8sServicePort as a number: Cilium takes 6443 or "6443". atoi, not int: int parses "0…" as octal.
*/}}
{{- define "plexus.k8sServicePort" -}}
{{- toString .Values.k8sServicePort | atoi -}}
{{- end -}}

{{/*
hubble.eventBufferCapacity as a number (Cilium writes it as a string, "4095").
*/}}
{{- define "plexus.eventBufferCapacity" -}}
{{- toString .Values.hubble.eventBufferCapacity | atoi -}}
{{- end -}}

{{/*
conntrackGCInterval in seconds. The schema admits Go durations of whole h/m/s parts in that order ("90s", "1m30s",
"2h", "0"), the form Cilium's value takes; the agent's flag counts seconds.
*/}}
{{- define "plexus.conntrackGCSeconds" -}}
{{- $d := toString .Values.conntrackGCInterval -}}
{{- $h := regexFind "[0-9]+h" $d | trimSuffix "h" | default "0" | atoi -}}
{{- $m := regexFind "[0-9]+m" $d | trimSuffix "m" | default "0" | atoi -}}
{{- $s := regexFind "[0-9]+s" $d | trimSuffix "s" | default "0" | atoi -}}
{{- add (mul $h 3600) (mul $m 60) $s -}}
{{- end -}}

{{/*
Fail early on value combinations that render but cannot work, and on Cilium values for features this build lacks
(the schema admits them so that the message can name the key).
*/}}
{{/*
"true" when Hubble's flow metrics are on: hubble on and hubble.metrics.enabled a non-empty list (Cilium's rule).
*/}}
{{- define "plexus.hubbleMetrics" -}}
{{- if and .Values.hubble.enabled .Values.hubble.metrics.enabled -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when the agent serves Hubble over TCP with TLS. */}}
{{- define "plexus.hubbleTls" -}}
{{- if and .Values.hubble.enabled .Values.hubble.listenAddress .Values.hubble.tls.enabled -}}
true
{{- end -}}
{{- end -}}

{{- define "plexus.validate" -}}
{{- if and (include "plexus.hubbleTls" .) .Values.hubble.tls.auto.enabled (ne (toString .Values.hubble.tls.auto.method) "helm") -}}
{{- fail (printf "hubble.tls.auto.method=%s is not supported: use helm, or auto.enabled=false with hubble.tls.server.existingSecret" (toString .Values.hubble.tls.auto.method)) -}}
{{- end -}}
{{- if and (include "plexus.hubbleTls" .) (not .Values.hubble.tls.auto.enabled) (not .Values.hubble.tls.server.existingSecret) -}}
{{- fail "hubble.tls.auto.enabled=false needs hubble.tls.server.existingSecret (a Secret with tls.crt, tls.key and ca.crt), or hubble.tls.enabled=false for plaintext" -}}
{{- end -}}
{{- $kprValue := toString .Values.kubeProxyReplacement -}}
{{- if has $kprValue (list "strict" "partial" "probe" "disabled") -}}
{{- fail (printf "kubeProxyReplacement=%s is not supported: use true or false (the older Cilium modes strict, partial, probe and disabled are not)" $kprValue) -}}
{{- end -}}
{{- $port := include "plexus.k8sServicePort" . | atoi -}}
{{- if or (lt $port 1) (gt $port 65535) -}}
{{- fail (printf "k8sServicePort=%v: must be a port, 1-65535" .Values.k8sServicePort) -}}
{{- end -}}
{{- $gc := include "plexus.conntrackGCSeconds" . | atoi -}}
{{- if gt $gc 86400 -}}
{{- fail (printf "conntrackGCInterval=%s: at most 24h (the agent takes 0-86400 seconds)" (toString .Values.conntrackGCInterval)) -}}
{{- end -}}
{{- $events := include "plexus.eventBufferCapacity" . | atoi -}}
{{- if or (lt $events 1) (gt $events 1048576) -}}
{{- fail (printf "hubble.eventBufferCapacity=%v: must be 1-1048576 (flows the agent keeps in memory)" .Values.hubble.eventBufferCapacity) -}}
{{- end -}}
{{- if .Values.hubble.metrics.enableOpenMetrics -}}
{{- fail "hubble.metrics.enableOpenMetrics=true is not supported: the Hubble metrics listener serves the Prometheus text format only" -}}
{{- end -}}
{{- if and (include "plexus.hubbleMetrics" .) .Values.prometheus.enabled (eq (int .Values.hubble.metrics.port) (int .Values.prometheus.port)) -}}
{{- fail (printf "hubble.metrics.port=%v is prometheus.port too: the Hubble metrics need a listener of their own" .Values.hubble.metrics.port) -}}
{{- end -}}
{{- $agg := toString .Values.bpf.monitorAggregation -}}
{{- if has $agg (list "low" "maximum") -}}
{{- fail (printf "bpf.monitorAggregation=%s is not supported: the datapath aggregates flow events at medium or none" $agg) -}}
{{- end -}}
{{- $chaining := toString .Values.cni.chainingMode -}}
{{- if eq $chaining "generic-veth" -}}
{{- fail "cni.chainingMode=generic-veth is not supported by the chart: it writes plexus-cni as the first plugin of its own conflist, and generic-veth needs another plugin before it (set up such a conflist by hand, see docs/cni.md); use none" -}}
{{- end -}}
{{- if has $chaining (list "aws-cni" "flannel") -}}
{{- fail (printf "cni.chainingMode=%s is not supported: plexus-cni chains only in generic-veth mode; use none" $chaining) -}}
{{- end -}}
{{- if and (ne (toString .Values.loadBalancer.mode) "snat") (not (include "plexus.kubeProxyReplacement" .)) -}}
{{- fail (printf "loadBalancer.mode=%s needs kubeProxyReplacement=true: direct server return runs in the devices' programs" (toString .Values.loadBalancer.mode)) -}}
{{- end -}}
{{- if ne (toString .Values.loadBalancer.dsrDispatch) "opt" -}}
{{- fail (printf "loadBalancer.dsrDispatch=%s is not supported: only opt (an IPv4 option) is built" (toString .Values.loadBalancer.dsrDispatch)) -}}
{{- end -}}
{{- if and .Values.enableIPv4Masquerade .Values.bpf.masquerade (not (include "plexus.kubeProxyReplacement" .)) -}}
{{- fail "bpf.masquerade=true needs kubeProxyReplacement=true: BPF masquerade runs in the devices' programs, which come with kube-proxy replacement" -}}
{{- end -}}
{{- if and .Values.enableIPv4Masquerade (eq (toString .Values.routingMode) "native") (not .Values.ipv4NativeRoutingCIDR) -}}
{{- fail "enableIPv4Masquerade=true with routingMode=native needs ipv4NativeRoutingCIDR: the destinations reached without masquerade (the cluster's pod CIDRs); or set enableIPv4Masquerade=false when the network routes pod addresses" -}}
{{- end -}}
{{- if and (include "plexus.kubeProxyReplacement" .) (not .Values.k8sServiceHost) -}}
{{- fail "kubeProxyReplacement=true needs k8sServiceHost: without kube-proxy the kubernetes Service ClusterIP is not reachable before the agent runs" -}}
{{- end -}}
{{- if eq (toString .Values.tunnelProtocol) "geneve" -}}
{{- fail "tunnelProtocol=geneve: Geneve is not supported on this build (the kernel has no Geneve driver); use tunnelProtocol=vxlan" -}}
{{- end -}}
{{- if and .Values.autoDirectNodeRoutes (ne (toString .Values.routingMode) "native") -}}
{{- fail (printf "autoDirectNodeRoutes=true needs routingMode=native (routingMode is %s): direct node routes replace the tunnel, as in Cilium" (toString .Values.routingMode)) -}}
{{- end -}}
{{- end -}}

{{/*
The agent's configuration from the chart's values, before extraConfig (configmap.yaml merges it).
*/}}
{{- define "plexus.agentConfig" -}}
{{- $kpr := include "plexus.kubeProxyReplacement" . | eq "true" -}}
state-dir: /var/lib/plexus
bpf-root: {{ printf "%s/plexus" (trimSuffix "/" .Values.bpf.root) | quote }}
socket: /run/plexus/plexus.sock
cluster-name: {{ .Values.cluster.name | quote }}
ipam-mode: {{ .Values.ipam.mode | quote }}
{{- if eq .Values.ipam.mode "cluster-pool" }}
cluster-pool-ipv4-cidr:
  {{- range .Values.ipam.operator.clusterPoolIPv4PodCIDRList }}
  - {{ . | quote }}
  {{- end }}
cluster-pool-ipv4-mask-size: {{ .Values.ipam.operator.clusterPoolIPv4MaskSize }}
{{- end }}
kube-proxy-replacement: {{ $kpr }}
{{- if .Values.k8sServiceHost }}
k8s-service-host: {{ .Values.k8sServiceHost | quote }}
k8s-service-port: {{ include "plexus.k8sServicePort" . }}
{{- end }}
routing-mode: {{ .Values.routingMode | quote }}
tunnel-protocol: {{ .Values.tunnelProtocol | quote }}
tunnel-port: {{ .Values.tunnelPort | int }}
auto-direct-node-routes: {{ .Values.autoDirectNodeRoutes }}
enable-host-legacy-routing: {{ .Values.bpf.hostLegacyRouting }}
{{- if .Values.ipv4NativeRoutingCIDR }}
ipv4-native-routing-cidr: {{ .Values.ipv4NativeRoutingCIDR | quote }}
{{- end }}
mtu: {{ .Values.MTU | int }}
health-port: {{ .Values.healthPort | int }}
enable-ipv4-masquerade: {{ .Values.enableIPv4Masquerade }}
enable-bpf-masquerade: {{ and .Values.enableIPv4Masquerade .Values.bpf.masquerade }}
monitor-aggregation: {{ .Values.bpf.monitorAggregation | quote }}
ct-map-size: {{ .Values.bpf.ctTcpMax | int }}
bpf-lb-map-max: {{ .Values.bpf.lbMapMax | int }}
bpf-policy-map-max: {{ .Values.bpf.policyMapMax | int }}
enable-hubble: {{ .Values.hubble.enabled }}
hubble-flow-buffer-size: {{ include "plexus.eventBufferCapacity" . }}
hubble-socket-path: {{ .Values.hubble.socketPath | quote }}
hubble-listen-address: {{ .Values.hubble.listenAddress | quote }}
hubble-disable-tls: {{ not .Values.hubble.tls.enabled }}
{{- if include "plexus.hubbleTls" . }}
hubble-tls-cert-file: /var/lib/plexus/tls/hubble/server.crt
hubble-tls-key-file: /var/lib/plexus/tls/hubble/server.key
hubble-tls-client-ca-files: [/var/lib/plexus/tls/hubble/client-ca.crt]
{{- end }}
{{- if include "plexus.hubbleMetrics" . }}
hubble-metrics-server: {{ printf ":%v" .Values.hubble.metrics.port | quote }}
hubble-metrics: {{ join " " .Values.hubble.metrics.enabled | quote }}
{{- end }}
lb-algorithm: {{ .Values.loadBalancer.algorithm | quote }}
enable-policy: {{ .Values.policyEnforcementMode | quote }}
policy-audit-mode: {{ .Values.policyAuditMode }}
bpf-lb-mode: {{ .Values.loadBalancer.mode | quote }}
bpf-lb-dsr-dispatch: {{ .Values.loadBalancer.dsrDispatch | quote }}
maglev-table-size: {{ .Values.maglev.tableSize | int }}
{{- if .Values.maglev.hashSeed }}
maglev-hash-seed: {{ .Values.maglev.hashSeed | quote }}
{{- end }}
{{- $gcSeconds := include "plexus.conntrackGCSeconds" . | atoi }}
{{- if gt $gcSeconds 0 }}
conntrack-gc-interval: {{ $gcSeconds }}
{{- end }}
{{- if .Values.kubeProxyReplacementHealthzBindAddr }}
kube-proxy-replacement-healthz-bind-address: {{ .Values.kubeProxyReplacementHealthzBindAddr | quote }}
{{- end }}
{{- if .Values.prometheus.enabled }}
prometheus-serve-addr: {{ printf "0.0.0.0:%v" .Values.prometheus.port | quote }}
health-addr: ""
{{- else }}
prometheus-serve-addr: ""
health-addr: "127.0.0.1:{{ include "plexus.healthzPort" . }}"
{{- end }}
debug: {{ .Values.debug.enabled }}
cgroup-root: {{ .Values.cgroup.hostRoot | quote }}
{{- if .Values.devices }}
devices: {{ .Values.devices | toJson }}
{{- end }}
enable-socket-lb: {{ $kpr }}
{{- end -}}
