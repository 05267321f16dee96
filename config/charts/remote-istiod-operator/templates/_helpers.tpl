{{/* Name of every object: the release name, with the chart name appended unless it already has it. */}}
{{- define "remote-istiod-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "remote-istiod-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "remote-istiod-operator.labels" -}}
{{ include "remote-istiod-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
The rules of one role from files/role.yaml, which `make manifests` copies from the
generated config/rbac/role.yaml so that the chart's RBAC never drifts: the ClusterRole,
or the Role generated for a namespace ("istio-system": the control plane's;
"remote-istiod-operator-system": the operator's own, where its leader lease lives).
*/}}
{{- define "remote-istiod-operator.generatedRules" -}}
{{- $kind := .kind -}}
{{- $namespace := .namespace | default "" -}}
{{- $rules := list -}}
{{- range regexSplit "(?m)^---\\s*$" (.root.Files.Get "files/role.yaml") -1 -}}
{{- $doc := fromYaml . -}}
{{- if and (eq (get $doc "kind") $kind) (eq (get (get $doc "metadata" | default dict) "namespace" | default "") $namespace) -}}
{{- $rules = $doc.rules -}}
{{- end -}}
{{- end -}}
{{- if not $rules -}}
{{- fail (printf "files/role.yaml has no %s rules for namespace %q" $kind $namespace) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}
