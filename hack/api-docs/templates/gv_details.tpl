{{- define "gvDetails" -}}
{{- $gv := . -}}
## {{ $gv.GroupVersionString }}

{{ template "prose" $gv.Doc }}
{{- $seen := dict }}
{{- range $gv.SortedKinds }}
{{- template "visit" dict "t" ($gv.TypeForKind .) "gv" $gv "seen" $seen }}
{{- end }}
{{- /* Types no kind reaches, if any, still get a section. */}}
{{- range $gv.SortedTypes }}
{{- template "visit" dict "t" . "gv" $gv "seen" $seen }}
{{- end }}
{{- end -}}

{{- /* visit renders a type of this group version once, then the types its fields use, so
that the page reads from the kind down, in field order. */ -}}
{{- define "visit" -}}
{{- $t := .t -}}
{{- if $t.Fields }}
{{- $local := index .gv.Types $t.Name }}
{{- if and $local (eq $local.UID $t.UID) (not (hasKey .seen $t.UID)) }}
{{- $_ := set .seen $t.UID true }}

{{ template "type" dict "t" $t "gv" .gv }}
{{- range $t.Members }}
{{- template "visit" dict "t" .Type "gv" $.gv "seen" $.seen }}
{{- end }}
{{- end }}
{{- else if $t.ValueType }}
{{- template "visit" dict "t" $t.ValueType "gv" .gv "seen" .seen }}
{{- else if $t.UnderlyingType }}
{{- template "visit" dict "t" $t.UnderlyingType "gv" .gv "seen" .seen }}
{{- end }}
{{- end -}}
