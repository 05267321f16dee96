{{- define "field_name" -}}
`{{ .Name }}` _{{ markdownRenderType .Type }}_
{{- /* controller-gen makes a field required unless it is marked optional. */}}
{{- if has "Optional: {}" .Validation }}<br />optional{{ else if ne .Name "metadata" }}<br />required{{ end }}
{{- end -}}

{{- define "type_members" -}}
{{- $field := . -}}
{{- if eq $field.Name "metadata" -}}
Standard object metadata. Refer to the Kubernetes API documentation for the fields of `metadata`.
{{- else -}}
{{ template "cell" $field.Doc }}
{{- $limits := list }}
{{- range $field.Validation }}{{ if not (has . (list "Optional: {}" "Required: {}")) }}{{ $limits = append $limits . }}{{ end }}{{ end }}
{{- if or $field.Default $limits }}<br /><br />{{ end }}
{{- with $field.Default }}**Default:** `{{ . }}`{{ if $limits }}. {{ end }}{{ end }}
{{- with $limits }}**Validation:** {{ join ", " . | markdownRenderFieldDoc }}{{ end }}
{{- /* Rules of a struct type are listed with the type. */}}
{{- if not $field.Type.Fields }}
{{- range index $field.Markers "kubebuilder:validation:XValidation" }}<br />**Rule:** {{ template "cell" .Message }}{{ end }}
{{- end }}
{{- end -}}
{{- end -}}

{{- /* cell is doc comment text inside a table row: one line, paragraphs kept. */ -}}
{{- define "cell" -}}
{{ . | trim | replace "\n\n" "\u2029" | replace "\n" " " | replace "<" "&lt;" | replace ">" "&gt;" | replace "*" "\\*" | markdownRenderFieldDoc | replace "\u2029" "<br /><br />" }}
{{- end -}}
