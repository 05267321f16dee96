package v1beta1_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

// crdFile is the CRD that make manifests generates from this package.
const crdFile = "../../config/crd/bases/istio.alibabacloud.com_asmmeshconfigs.yaml"

// minDescriptionWords is what a description needs to say more than its field's name:
// "ReadyReplicas of istiod." is too short to help anyone reading kubectl explain.
const minDescriptionWords = 6

// TestCRDPropertiesAreDescribed fails when a property of the ASMMeshConfig schema, in
// spec or status, has no description or a trivially short one. The Go types say where
// to stop: inside a type from another module (resources, affinity, conditions, ...) the
// descriptions are upstream's, so only the field that embeds it is checked.
func TestCRDPropertiesAreDescribed(t *testing.T) {
	raw, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(raw, crd); err != nil {
		t.Fatalf("%s: %v", crdFile, err)
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Schema == nil {
		t.Fatalf("%s: want one version with a schema", crdFile)
	}
	root := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	checkDescription(t, "ASMMeshConfig", root.Description)
	rootType := reflect.TypeFor[v1beta1.ASMMeshConfig]()
	for _, name := range []string{"spec", "status"} {
		field, ok := jsonFields(rootType)[name]
		if !ok {
			t.Fatalf("ASMMeshConfig has no field %q", name)
		}
		checkProperty(t, name, root.Properties, field.Type)
	}
}

// checkProperty checks the property at path and, when its Go type is one of this
// package's structs, every property below it.
func checkProperty(t *testing.T, path string, parent map[string]apiextensionsv1.JSONSchemaProps, goType reflect.Type) {
	t.Helper()
	name := path[strings.LastIndex(path, ".")+1:]
	prop, ok := parent[name]
	if !ok {
		t.Errorf("%s: in the Go types but not in the CRD; run make manifests", path)
		return
	}
	checkDescription(t, path, prop.Description)

	// Walk down to the object whose properties the Go struct describes.
	for goType.Kind() != reflect.Struct {
		switch goType.Kind() {
		case reflect.Pointer:
			goType = goType.Elem()
		case reflect.Slice:
			if prop.Items == nil || prop.Items.Schema == nil {
				return
			}
			goType, prop, path = goType.Elem(), *prop.Items.Schema, path+"[]"
		case reflect.Map:
			if prop.AdditionalProperties == nil || prop.AdditionalProperties.Schema == nil {
				return
			}
			goType, prop, path = goType.Elem(), *prop.AdditionalProperties.Schema, path+".*"
		default:
			return // a scalar: nothing below it
		}
	}
	if goType.PkgPath() != reflect.TypeFor[v1beta1.ASMMeshConfig]().PkgPath() {
		return // described by its own module, for example k8s.io/api
	}
	fields := jsonFields(goType)
	for propName := range prop.Properties {
		if _, ok := fields[propName]; !ok {
			t.Errorf("%s.%s: in the CRD but not in the Go types; run make manifests", path, propName)
		}
	}
	for jsonName, field := range fields {
		checkProperty(t, path+"."+jsonName, prop.Properties, field.Type)
	}
}

func checkDescription(t *testing.T, path, description string) {
	t.Helper()
	switch words := len(strings.Fields(description)); {
	case words == 0:
		t.Errorf("%s has no description: write a doc comment on its Go field and run make manifests", path)
	case words < minDescriptionWords:
		t.Errorf("%s: description %q is too short to help a user (%d words, want at least %d)", path, description, words, minDescriptionWords)
	}
}

// jsonFields maps the JSON names of a struct's serialized fields to the fields.
func jsonFields(structType reflect.Type) map[string]reflect.StructField {
	fields := map[string]reflect.StructField{}
	for field := range structType.Fields() {
		name, _, _ := strings.Cut(field.Tag.Get("json"), ",")
		if !field.IsExported() || name == "-" || name == "" {
			continue // inline TypeMeta, unexported and skipped fields
		}
		fields[name] = field
	}
	return fields
}
