package v1beta1_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

// admission validates ASMMeshConfigs in-process as the API server does, with the
// generated CRD's schema and CEL rules and apiextensions-apiserver's own code: defaults,
// then the OpenAPI schema, then the CEL rules.
type admission struct {
	structural *structuralschema.Structural
	schema     apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

func loadAdmission(t testing.TB) *admission {
	t.Helper()
	raw, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(raw, crd); err != nil {
		t.Fatal(err)
	}
	internal := &apiextensions.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(crd.Spec.Versions[0].Schema.OpenAPIV3Schema, internal, nil); err != nil {
		t.Fatal(err)
	}
	structural, err := structuralschema.NewStructural(internal)
	if err != nil {
		t.Fatal(err)
	}
	validator, _, err := apiservervalidation.NewSchemaValidator(internal)
	if err != nil {
		t.Fatal(err)
	}
	return &admission{structural: structural, schema: validator, cel: cel.NewValidator(structural, true, celconfig.PerCallLimit)}
}

// validate follows customResourceStrategy.Validate (pkg/registry/customresource/
// strategy.go): the CEL rules run only when the schema found no blocking error.
func (a *admission) validate(obj map[string]any) field.ErrorList {
	structuraldefaulting.Default(obj, a.structural)
	errs := apiservervalidation.ValidateCustomResource(nil, obj, a.schema)
	errs = append(errs, schemaobjectmeta.Validate(context.Background(), nil, obj, a.structural, false)...)
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, a.structural, obj)...)
	for _, err := range errs {
		switch err.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return append(errs, field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"))
		}
	}
	celErrs, _ := a.cel.Validate(context.Background(), nil, a.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

// guidance is how a refusal says what a field must be: the CRD's own messages ("must
// be ...", "set ... first") and the schema's ("should be greater than or equal to 1",
// "supported values: ...", "may not be more than 63 bytes", "must be of type integer").
var guidance = regexp.MustCompile(`must|should|\bset\b|supported values|may not|Required value|Too many|Too long|correct the existing errors`)

// celFailures are words of a CEL rule that failed to run rather than to hold: a rule
// that errs on some input refuses it without saying what to fix.
var celFailures = []string{"no such key", "no such overload", "evaluation", "failed rule", "compil", "cost", "unsupported"}

// checkRefusals fails on a refusal that names no field or does not say what to fix.
func checkRefusals(t *testing.T, errs field.ErrorList) {
	t.Helper()
	for _, err := range errs {
		msg := err.Error()
		switch {
		case err.Type == field.ErrorTypeInternal:
			t.Errorf("internal error, not a refusal: %s", msg)
		case err.Field == "" || !strings.HasPrefix(err.Field, "spec") && !strings.HasPrefix(err.Field, "metadata") && !strings.HasPrefix(err.Field, "<nil>"):
			t.Errorf("the refusal names no field of the object: %q (%s)", err.Field, msg)
		case !guidance.MatchString(msg):
			t.Errorf("the refusal does not say what the field must be: %s", msg)
		}
		for _, word := range celFailures {
			if strings.Contains(strings.ToLower(err.Detail), word) {
				t.Errorf("a CEL rule failed to run (%q): %s", word, msg)
			}
		}
	}
}

func object(spec map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": v1beta1.GroupVersion.String(), "kind": "ASMMeshConfig",
		"metadata": map[string]any{"name": v1beta1.DefaultName}, "spec": spec,
	}
}

// TestAdmissionRulesHaveMessages: a CEL rule without a message is refused as
// "failed rule: <the expression>", which says nothing a person can act on.
func TestAdmissionRulesHaveMessages(t *testing.T) {
	raw, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules []map[string]any
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if list, ok := v["x-kubernetes-validations"].([]any); ok {
				for _, r := range list {
					rules = append(rules, r.(map[string]any))
				}
			}
			for _, child := range v {
				walk(child)
			}
		case []any:
			for _, child := range v {
				walk(child)
			}
		}
	}
	var crd map[string]any
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	walk(crd)
	if len(rules) == 0 {
		t.Fatal("the CRD has no CEL rules: the schema is not where it is looked for")
	}
	for _, r := range rules {
		if m, _ := r["message"].(string); m == "" {
			if mx, _ := r["messageExpression"].(string); mx == "" {
				t.Errorf("rule %v has no message", r["rule"])
			}
		}
	}
}

// FuzzAdmissionFields builds ASMMeshConfigs from fuzzed field values: validating one
// never panics, and every refusal names its field and says what the field must be.
// `make test` runs the seeds (valid and invalid specs); `go test -fuzz
// FuzzAdmissionFields ./api/v1beta1` explores further.
func FuzzAdmissionFields(f *testing.F) {
	a := loadAdmission(f)
	type seed struct {
		id, version, hub, meshID, trustDomain, network, priorityClass, host string
		replicas                                                            int64
		useDataPlane, mutualAccess                                          bool
		tolerations                                                         uint8
	}
	for _, s := range []seed{
		{id: "cluster-2", replicas: 2},
		{id: "cluster-2", version: "1.28.3", hub: "docker.io/istio", meshID: "mesh1", trustDomain: "cluster.local", network: "network-2",
			priorityClass: "system-cluster-critical", host: "reviews.default.svc.cluster.local", replicas: 3, mutualAccess: true, tolerations: 2},
		{id: "cluster_2!", replicas: 1},
		{id: strings.Repeat("c", 64), replicas: 1},
		{id: "cluster-2", replicas: 0},
		{id: "cluster-2", replicas: 500},
		{id: "cluster-2", version: "1.21.4", replicas: 1},
		{id: "cluster-2", version: "1.33.0", replicas: 1},
		{id: "cluster-2", version: "latest", replicas: 1},
		{id: "cluster-2", hub: "docker.io/istio/", replicas: 1},
		{id: "cluster-2", meshID: "mesh one", replicas: 1},
		{id: "cluster-2", trustDomain: "Cluster.Local", replicas: 1},
		{id: "cluster-2", network: "net work", replicas: 1},
		{id: "cluster-2", priorityClass: "High_Priority", replicas: 1},
		{id: "cluster-2", host: "Reviews.default:9080", replicas: 1},
		{id: "cluster-2", replicas: 1, tolerations: 65},
		{id: "cluster-2", replicas: 1, useDataPlane: true},
		{id: "", replicas: 1},
		{id: "cluster-2", version: "1.", hub: ":", meshID: "-", trustDomain: ".", network: "_", priorityClass: ".", host: "*", replicas: -1},
	} {
		f.Add(s.id, s.version, s.hub, s.meshID, s.trustDomain, s.network, s.priorityClass, s.host, s.replicas, s.useDataPlane, s.mutualAccess, s.tolerations)
	}
	f.Fuzz(func(t *testing.T, id, version, hub, meshID, trustDomain, network, priorityClass, host string,
		replicas int64, useDataPlane, mutualAccess bool, tolerations uint8) {
		entry := map[string]any{"replicas": replicas, "mutualAccess": mutualAccess}
		setIf(entry, "network", network)
		setIf(entry, "priorityClassName", priorityClass)
		if host != "" {
			entry["keepTrafficInCluster"] = map[string]any{"hosts": []any{host}}
		}
		if tolerations > 0 {
			list := make([]any, tolerations)
			for i := range list {
				list[i] = map[string]any{"key": "dedicated", "operator": "Exists"}
			}
			entry["tolerations"] = list
		}
		spec := map[string]any{"externalIstiodConfigurations": map[string]any{id: entry}, "useDataPlaneKubeAPIForIstioResources": useDataPlane}
		setIf(spec, "version", version)
		setIf(spec, "hub", hub)
		setIf(spec, "meshID", meshID)
		setIf(spec, "trustDomain", trustDomain)
		checkRefusals(t, a.validate(object(spec)))
	})
}

// FuzzAdmissionJSON validates specs of any shape (fuzzed JSON): no panic, and every
// refusal names its field and says what it must be.
func FuzzAdmissionJSON(f *testing.F) {
	a := loadAdmission(f)
	for _, seed := range []string{
		`{"externalIstiodConfigurations": {"cluster-2": {"replicas": 2, "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}}}}}`,
		`{"externalIstiodConfigurations": {"cluster-2": {"replicas": "two"}}}`,
		`{"externalIstiodConfigurations": {"cluster-2": null}}`,
		`{"externalIstiodConfigurations": []}`,
		`{"externalIstiodConfigurations": {"cluster-2": {"keepTrafficInCluster": {}}}, "version": 1.28}`,
		`{"externalIstiodConfigurations": {"cluster-2": {"keepTrafficInCluster": {"hosts": [1, null]}}}}`,
		`{"externalIstiodConfigurations": {"cluster-2": {"affinity": {"nodeAffinity": "x"}, "tolerations": [{}]}}}`,
		`{"useDataPlaneKubeAPIForIstioResources": "yes", "trustDomain": ""}`,
		`{"unknownField": true}`,
		`null`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var spec any
		if err := json.Unmarshal([]byte(raw), &spec); err != nil {
			return // not JSON: the API server's decoder refuses it before admission
		}
		obj := object(nil)
		obj["spec"] = spec
		checkRefusals(t, a.validate(obj))
	})
}

func setIf(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// TestAdmissionRefuses checks, in-process, that the rules the fuzz targets exercise are
// there: each bad spec is refused, naming its field, with the message saying what to do.
func TestAdmissionRefuses(t *testing.T) {
	a := loadAdmission(t)
	entry := func(e map[string]any) map[string]any {
		return map[string]any{"externalIstiodConfigurations": map[string]any{"cluster-2": e}}
	}
	for _, c := range []struct {
		spec          map[string]any
		field, output string
	}{
		{map[string]any{"externalIstiodConfigurations": map[string]any{"cluster_2!": map[string]any{}}}, "spec.externalIstiodConfigurations", "must be valid label values"},
		{entry(map[string]any{"replicas": 0}), "spec.externalIstiodConfigurations.cluster-2.replicas", "should be greater than or equal to 1"},
		{map[string]any{"version": "1.21.4"}, "spec", "set 1.22.0 or newer"},
		{map[string]any{"version": "latest"}, "spec.version", "must be an Istio release such as 1.24.3"},
		{map[string]any{"hub": "docker.io/istio/"}, "spec.hub", "must be an image registry path"},
		{map[string]any{"trustDomain": "Cluster.Local"}, "spec.trustDomain", "must be a lower-case DNS name"},
		{entry(map[string]any{"network": "net work"}), "spec.externalIstiodConfigurations[cluster-2].network", "network must be a valid label value"},
		{map[string]any{"useDataPlaneKubeAPIForIstioResources": true, "externalIstiodConfigurations": map[string]any{"cluster-2": map[string]any{}}},
			"spec", "set useDataPlaneKubeAPIForIstioResources to false first"},
	} {
		errs := a.validate(object(c.spec))
		found := false
		for _, err := range errs {
			if err.Field == c.field && strings.Contains(err.Error(), c.output) {
				found = true
			}
		}
		if !found {
			t.Errorf("%v: want a refusal of %s saying %q, got %v", c.spec, c.field, c.output, errs)
		}
	}
	if errs := a.validate(object(entry(map[string]any{"replicas": 2}))); len(errs) > 0 {
		t.Errorf("a valid spec is refused: %v", errs)
	}
}
