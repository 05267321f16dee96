{{- define "gvList" -}}
{{- $groupVersions := . -}}
# API reference

<!-- Generated from the Go types in api/ by `make api-docs` (crd-ref-docs, templates in hack/api-docs). Do not edit. -->

This page describes every field of the operator's API, as `kubectl explain` shows it.
{{- range $groupVersions }}

{{ template "gvDetails" . }}
{{- end }}
{{ end -}}
