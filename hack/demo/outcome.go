package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// applySamples creates what config/samples/kustomization.yaml lists in the mesh
// cluster and returns the clusters its ASMMeshConfig gives a remote control plane.
func applySamples(ctx context.Context, root string, m *localmesh.Mesh) (map[string]bool, error) {
	dir := filepath.Join(root, "config", "samples")
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var kustomization struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(raw, &kustomization); err != nil {
		return nil, fmt.Errorf("reading config/samples/kustomization.yaml: %w", err)
	}
	wanted := map[string]bool{}
	for _, res := range kustomization.Resources {
		manifest, err := os.ReadFile(filepath.Join(dir, res))
		if err != nil {
			return nil, err
		}
		objs, err := m.Mesh.Create(ctx, manifest)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			entries, _, _ := unstructured.NestedMap(o.Object, "spec", "externalIstiodConfigurations")
			for id := range entries {
				wanted[id] = true
			}
		}
	}
	return wanted, nil
}

// waitForOutcome waits until checkOutcome passes, saying how the status changes, and
// returns checkOutcome's last complaint when timeout passes first.
func waitForOutcome(ctx context.Context, m *localmesh.Mesh, wanted map[string]bool, before map[string]*dataPlaneView,
	timeout time.Duration, out *printer) error {
	start := time.Now()
	deadline := time.After(timeout)
	lastSummary, lastSaid := "", time.Now()
	for {
		err := checkOutcome(ctx, m, wanted, before)
		if err == nil {
			out.line("done in %s", time.Since(start).Round(time.Second))
			return nil
		}
		if mc, getErr := meshConfig(ctx, m); getErr == nil {
			if s := statusSummary(mc); s != lastSummary {
				out.line("%s", s)
				lastSummary, lastSaid = s, time.Now()
			}
		}
		if time.Since(lastSaid) > progressEvery {
			out.line("still waiting (%s): %v", time.Since(start).Round(time.Second), err)
			lastSaid = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return err
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// statusSummary is one line on the ASMMeshConfig's conditions and its clusters'.
func statusSummary(mc *v1beta1.ASMMeshConfig) string {
	parts := []string{"ASMMeshConfig " + conditionList(mc.Status.Conditions, v1beta1.ConditionReady)}
	for _, cs := range mc.Status.Clusters {
		parts = append(parts, cs.ClusterID+": "+conditionList(cs.Conditions, v1beta1.ConditionConnected, v1beta1.ConditionMeshTrust,
			v1beta1.ConditionApplied, v1beta1.ConditionConfigMirrored, v1beta1.ConditionIstiodReady, v1beta1.ConditionSwitched))
	}
	return strings.Join(parts, "; ")
}

// conditionList names each condition that is true, and adds the reason of one that
// is not.
func conditionList(conds []metav1.Condition, types ...string) string {
	var out []string
	for _, t := range types {
		switch c := meta.FindStatusCondition(conds, t); {
		case c == nil:
			out = append(out, t+"=?")
		case c.Status == metav1.ConditionTrue:
			out = append(out, t)
		default:
			out = append(out, fmt.Sprintf("%s=%s (%s)", t, c.Status, c.Reason))
		}
	}
	return strings.Join(out, ", ")
}

// checkOutcome says what is not yet as the sample asks: the ASMMeshConfig Ready; each
// wanted cluster with a ready istiod of the operator's that carries the mesh's
// settings, switched to it through its Service istiod, with its gateways restarted;
// every other cluster as it was installed (before).
func checkOutcome(ctx context.Context, m *localmesh.Mesh, wanted map[string]bool, before map[string]*dataPlaneView) error {
	mc, err := meshConfig(ctx, m)
	if err != nil {
		return err
	}
	if c := meta.FindStatusCondition(mc.Status.Conditions, v1beta1.ConditionReady); c == nil ||
		c.Status != metav1.ConditionTrue || c.ObservedGeneration != mc.Generation || mc.Status.ObservedGeneration != mc.Generation {
		return errors.New("the ASMMeshConfig is not Ready")
	}
	for _, dp := range m.DataPlanes {
		if err := checkInstalled(before[dp.ID], dp.ID, dp.Address); err != nil {
			return fmt.Errorf("%s as installed: %w", dp.ID, err)
		}
		if wanted[dp.ID] {
			if err := checkClusterStatus(mc, dp.ID, dp.Address); err != nil {
				return fmt.Errorf("%s: %w", dp.ID, err)
			}
		}
		v, err := inspect(ctx, dp)
		if err != nil {
			return err
		}
		if err := checkDataPlane(v, before[dp.ID], wanted[dp.ID], dp.ID); err != nil {
			return fmt.Errorf("%s: %w", dp.ID, err)
		}
	}
	return nil
}

// checkClusterStatus says what a cluster's entry in the status lacks: Ready and
// Switched, with the switch's message naming the flavour of the control plane address
// it switched.
func checkClusterStatus(mc *v1beta1.ASMMeshConfig, id, address string) error {
	for _, cs := range mc.Status.Clusters {
		if cs.ClusterID != id {
			continue
		}
		for _, t := range []string{v1beta1.ConditionReady, v1beta1.ConditionSwitched} {
			if !meta.IsStatusConditionTrue(cs.Conditions, t) {
				return fmt.Errorf("not %s", t)
			}
		}
		return checkSwitchMessage(meta.FindStatusCondition(cs.Conditions, v1beta1.ConditionSwitched).Message, address)
	}
	return errors.New("no status")
}

// switchWords are what the Switched condition's message says of each flavour of the
// remote profile's Service istiod (internal/controller/switch.go).
var switchWords = map[string]string{
	localmesh.AddressExternalName:  "(ExternalName " + localmesh.MeshPilotHost + ")",
	localmesh.AddressEndpointSlice: "EndpointSlice",
}

// switchedThrough is how the Switched condition's message begins to name the address.
const switchedThrough = "Service " + localmesh.Namespace + "/istiod of Istio's remote profile ("

func checkSwitchMessage(msg, address string) error {
	i := strings.Index(msg, switchedThrough)
	if i < 0 || !strings.Contains(msg[i:], switchWords[address]) {
		return fmt.Errorf("the Switched condition does not say that it switched Service %s/istiod of the %s flavour: %q",
			localmesh.Namespace, address, msg)
	}
	return nil
}

// checkInstalled says how a cluster as localmesh installed it differs from Istio's
// remote profile of its flavour.
func checkInstalled(v *dataPlaneView, id, address string) error {
	if v == nil {
		return errors.New("not inspected")
	}
	if got := v.address.flavour(); got != address {
		return fmt.Errorf("control plane address is %s, not of the %s flavour", v.address, address)
	}
	if address == localmesh.AddressExternalName && v.address.externalName != localmesh.MeshPilotHost {
		return fmt.Errorf("control plane address is %s, not %s", v.address, localmesh.MeshPilotHost)
	}
	if v.lead != localmesh.MeshClusterID {
		return fmt.Errorf("led by %q, not by the mesh control plane", v.lead)
	}
	if err := allCall(v.injectors, meshInjection(id, address)); err != nil {
		return err
	}
	return allCall(v.validators, serviceValidation)
}

// checkDataPlane says how a cluster differs from what it should be: switched to its
// own istiod when it is wanted, as it was installed otherwise.
func checkDataPlane(v, before *dataPlaneView, wanted bool, id string) error {
	if wanted {
		return checkSwitched(v, id)
	}
	return checkUntouched(v, before)
}

func checkSwitched(v *dataPlaneView, id string) error {
	if v.istiod == nil || !istiodAvailable(v.istiod) {
		return errors.New("no available istiod of the operator's")
	}
	if v.lead != id {
		return fmt.Errorf("led by %q, not by its own istiod", v.lead)
	}
	if v.address.flavour() != addressLocal {
		return fmt.Errorf("its Service istio-system/istiod is %s, not leading to the local istiod (ClusterIP, selector %s)",
			v.address, selectorString(switching.LocalSelector))
	}
	if err := allCallPrefix(v.injectors, serviceInjection); err != nil {
		return err
	}
	if err := allCallPrefix(v.validators, serviceValidation); err != nil {
		return err
	}
	if err := checkMeshSettings(v.settings); err != nil {
		return err
	}
	for _, gw := range localmesh.Gateways {
		if v.restarts[gw] == "" {
			return fmt.Errorf("gateway %s was not restarted", gw)
		}
	}
	if v.restarts[localmesh.AppDeployment] != "" {
		return fmt.Errorf("%s, not a gateway, was restarted", localmesh.AppDeployment)
	}
	return nil
}

// checkMeshSettings says which of the mesh istiod's settings the local istiod lacks.
func checkMeshSettings(s *meshSettings) error {
	if s == nil {
		return errors.New("the local istiod has no ConfigMap istio of the operator's")
	}
	for _, c := range []struct{ what, got, want string }{
		{"outboundTrafficPolicy", s.outboundTrafficPolicy, localmesh.MeshOutboundTrafficPolicy},
		{"accessLogFile", s.accessLogFile, localmesh.MeshAccessLogFile},
		{"proxy memory limit", s.proxyMemoryLimit, localmesh.MeshProxyMemoryLimit},
	} {
		if c.got != c.want {
			return fmt.Errorf("the local istiod's %s is %q, not the mesh's %q", c.what, c.got, c.want)
		}
	}
	return nil
}

// checkUntouched says how a cluster without an entry differs from how it was installed.
func checkUntouched(v, before *dataPlaneView) error {
	if v.owned > 0 {
		return fmt.Errorf("holds %d objects of the operator", v.owned)
	}
	if v.lead != before.lead {
		return fmt.Errorf("led by %q, not by %q as installed", v.lead, before.lead)
	}
	if !reflect.DeepEqual(v.address, before.address) {
		return fmt.Errorf("its Service istio-system/istiod is %s, not %s as installed", v.address, before.address)
	}
	if !reflect.DeepEqual(v.injectors, before.injectors) {
		return fmt.Errorf("injectors call %v, not %v as installed", v.injectors, before.injectors)
	}
	if !reflect.DeepEqual(v.validators, before.validators) {
		return fmt.Errorf("validators call %v, not %v as installed", v.validators, before.validators)
	}
	for name, restart := range v.restarts {
		if restart != "" {
			return fmt.Errorf("%s was restarted", name)
		}
	}
	return nil
}

// allCall says which webhook configuration has a webhook that calls another target.
func allCall(configs []webhookConfig, want string) error {
	return allCallWith(configs, want, func(t string) bool { return t == want })
}

// allCallPrefix is allCall for targets that start with want (paths may go on).
func allCallPrefix(configs []webhookConfig, want string) error {
	return allCallWith(configs, want+"...", func(t string) bool { return strings.HasPrefix(t, want) })
}

func allCallWith(configs []webhookConfig, want string, ok func(string) bool) error {
	if len(configs) == 0 {
		return fmt.Errorf("no webhook calls %s", want)
	}
	for _, wc := range configs {
		for _, t := range wc.targets {
			if !ok(t) {
				return fmt.Errorf("webhook configuration %s calls %s, not %s", wc.name, t, want)
			}
		}
	}
	return nil
}
