{{- define "type" -}}
{{- $type := .t -}}
### {{ $type.Name }}

{{ template "prose" $type.Doc }}
{{- with $type.SortedReferences }}

_Appears in:_ {{ range $i, $ref := . }}{{ if $i }}, {{ end }}{{ markdownRenderTypeLink $ref }}{{ end }}
{{- end }}
{{- with index $type.Markers "kubebuilder:validation:XValidation" }}

_Rules checked when the object is written:_
{{ range . }}
- {{ template "prose" .Message }}
{{- end }}
{{- end }}

| Field | Description |
| --- | --- |
{{- if $type.GVK }}
| `apiVersion` _string_ | `{{ $type.GVK.Group }}/{{ $type.GVK.Version }}` |
| `kind` _string_ | `{{ $type.GVK.Kind }}` |
{{- end }}
{{- range $type.Members }}
| {{ template "field_name" . }} | {{ template "type_members" . }} |
{{- end }}
{{- end -}}

{{- /* prose is doc comment text as Markdown: wrapped lines joined, HTML and emphasis
characters escaped. */ -}}
{{- define "prose" -}}
{{ . | trim | replace "\n\n" "\u2029" | replace "\n" " " | replace "\u2029" "\n\n" | replace "<" "&lt;" | replace ">" "&gt;" | replace "*" "\\*" }}
{{- end -}}
