{{/*
Names, labels, and the list of services every per-service template ranges over.
*/}}

{{- define "auditstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Resource name prefix. Component names are appended (longest: "-sink-azure-monitor-ops",
23 characters), so the prefix is cut to 40 to keep every name within 63.
*/}}
{{- define "auditstream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "auditstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; pass (dict "root" $ "component" "gateway"). */}}
{{- define "auditstream.labels" -}}
helm.sh/chart: {{ include "auditstream.chart" .root }}
{{ include "auditstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: auditstream
{{- end }}

{{/* Selector labels: stable across upgrades, so never add to them. */}}
{{- define "auditstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "auditstream.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/*
The services. Each entry: name (Kubernetes component name), key (its block in values:
a top-level key, or sinks.<sink>), binary, the consumer stream KEDA watches, and for sinks
the sink type. Templates read it with `include "auditstream.components" . | fromYamlArray`.
*/}}
{{- define "auditstream.components" -}}
- name: gateway
  key: gateway
  binary: auditstream-gateway
- name: config-service
  key: configService
  binary: auditstream-config-service
- name: router
  key: router
  binary: auditstream-router
  stream: AUDIT_INGEST
- name: sink-s3
  sink: s3
  binary: auditstream-sink-s3
  stream: AUDIT_DELIVER
- name: sink-azure-blob
  sink: azureBlob
  binary: auditstream-sink-azure-blob
  stream: AUDIT_DELIVER
- name: sink-azure-monitor
  sink: azureMonitor
  binary: auditstream-sink-azure-monitor
  stream: AUDIT_DELIVER
- name: sink-http
  sink: http
  binary: auditstream-sink-http
  stream: AUDIT_DELIVER
{{- end }}

{{/*
A component's values block as YAML: (dict "root" $ "c" $component). Helm templates can only
return strings, hence the toYaml / fromYaml round trip.
*/}}
{{- define "auditstream.componentValues" -}}
{{- if .c.sink }}
{{- index .root.Values.sinks .c.sink | toYaml }}
{{- else }}
{{- index .root.Values .c.key | toYaml }}
{{- end }}
{{- end }}

{{/* The ServiceAccount name of a component: (dict "root" $ "c" $component "v" $values). */}}
{{- define "auditstream.serviceAccountName" -}}
{{- if .v.serviceAccount.create }}
{{- default (printf "%s-%s" (include "auditstream.fullname" .root) .c.name) .v.serviceAccount.name }}
{{- else }}
{{- default "default" .v.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The config-service URL the router and the sinks use. */}}
{{- define "auditstream.configServiceUrl" -}}
{{- if .Values.configServiceUrl }}
{{- .Values.configServiceUrl }}
{{- else }}
{{- printf "http://%s-config-service.%s.svc:%v" (include "auditstream.fullname" .) .Release.Namespace .Values.configService.ports.grpc }}
{{- end }}
{{- end }}

{{/*
An environment value as a string. Helm reads numbers from values as float64, which would
print 17179869184 as 1.7179869184e+10; whole numbers are printed as integers instead.
*/}}
{{- define "auditstream.envValue" -}}
{{- if kindIs "float64" . }}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if kindIs "slice" . }}
{{- toJson . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* An int-or-string field (PDB counts): "50%" stays a string, 1 an integer. */}}
{{- define "auditstream.intOrString" -}}
{{- if kindIs "string" . }}{{ quote . }}{{ else }}{{ int . }}{{ end }}
{{- end }}

{{/*
Refuses values the schema cannot check: relations between keys. Included once by
configmap.yaml; `fail` stops the render with the message.
*/}}
{{- define "auditstream.validate" -}}
{{- $root := . }}
{{- range $c := include "auditstream.components" $root | fromYamlArray }}
{{- $v := include "auditstream.componentValues" (dict "root" $root "c" $c) | fromYaml }}
{{- if $v.enabled }}
{{- $path := ternary (printf "sinks.%s" $c.sink) $c.key (hasKey $c "sink") }}
{{- $minGrace := add (int $root.Values.shutdownGraceSeconds) 5 }}
{{- if lt (int $v.terminationGracePeriodSeconds) (int $minGrace) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must be at least shutdownGraceSeconds + 5 (%v): Kubernetes kills the pod before it has drained" $path $v.terminationGracePeriodSeconds $minGrace) }}
{{- end }}
{{- $min := $v.replicas }}
{{- if and $v.autoscaling.enabled (not (kindIs "invalid" $v.autoscaling.minReplicas)) }}
{{- $min = $v.autoscaling.minReplicas }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $min) (int $v.autoscaling.maxReplicas)) }}
{{- fail (printf "%s.autoscaling: minReplicas (%v) is above maxReplicas (%v)" $path $min $v.autoscaling.maxReplicas) }}
{{- end }}
{{- if and $v.keda $v.keda.enabled }}
{{- $kmin := $v.replicas }}
{{- if not (kindIs "invalid" $v.keda.minReplicaCount) }}{{ $kmin = $v.keda.minReplicaCount }}{{ end }}
{{- if lt (int $kmin) 1 }}
{{- fail (printf "%s.keda: the minimum replica count must be at least 1 (set replicas or keda.minReplicaCount): only a running replica drains its backlog and answers test-connection requests" $path) }}
{{- end }}
{{- if gt (int $kmin) (int $v.keda.maxReplicaCount) }}
{{- fail (printf "%s.keda: minReplicaCount (%v) is above maxReplicaCount (%v)" $path $kmin $v.keda.maxReplicaCount) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not .Values.configService.enabled) (not .Values.configServiceUrl) }}
{{- fail "configService.enabled is false: set configServiceUrl to the config service the router and sinks should use" }}
{{- end }}
{{- end }}
