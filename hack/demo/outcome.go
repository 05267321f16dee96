package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
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
func waitForOutcome(ctx context.Context, m *localmesh.Mesh, wanted map[string]bool, timeout time.Duration, out *printer) error {
	start := time.Now()
	deadline := time.After(timeout)
	lastSummary, lastSaid := "", time.Now()
	for {
		err := checkOutcome(ctx, m, wanted)
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
// wanted cluster with a ready istiod of the operator's, switched to it, with its
// gateways restarted; every other cluster untouched.
func checkOutcome(ctx context.Context, m *localmesh.Mesh, wanted map[string]bool) error {
	mc, err := meshConfig(ctx, m)
	if err != nil {
		return err
	}
	if c := meta.FindStatusCondition(mc.Status.Conditions, v1beta1.ConditionReady); c == nil ||
		c.Status != metav1.ConditionTrue || c.ObservedGeneration != mc.Generation || mc.Status.ObservedGeneration != mc.Generation {
		return errors.New("the ASMMeshConfig is not Ready")
	}
	for _, dp := range m.DataPlanes {
		if wanted[dp.ID] {
			if err := checkClusterStatus(mc, dp.ID); err != nil {
				return fmt.Errorf("%s: %w", dp.ID, err)
			}
		}
		v, err := inspect(ctx, dp)
		if err != nil {
			return err
		}
		if err := checkDataPlane(v, wanted[dp.ID], dp.ID); err != nil {
			return fmt.Errorf("%s: %w", dp.ID, err)
		}
	}
	return nil
}

// checkClusterStatus says what a cluster's entry in the status lacks.
func checkClusterStatus(mc *v1beta1.ASMMeshConfig, id string) error {
	for _, cs := range mc.Status.Clusters {
		if cs.ClusterID != id {
			continue
		}
		for _, t := range []string{v1beta1.ConditionReady, v1beta1.ConditionSwitched} {
			if !meta.IsStatusConditionTrue(cs.Conditions, t) {
				return fmt.Errorf("not %s", t)
			}
		}
		return nil
	}
	return errors.New("no status")
}

// checkDataPlane says how a cluster differs from what it should be: switched to its
// own istiod when it is wanted, untouched otherwise.
func checkDataPlane(v *dataPlaneView, wanted bool, id string) error {
	if wanted {
		return checkSwitched(v, id)
	}
	return checkUntouched(v, id)
}

func checkSwitched(v *dataPlaneView, id string) error {
	if v.istiod == nil || !istiodAvailable(v.istiod) {
		return errors.New("no available istiod of the operator's")
	}
	if v.lead != id {
		return fmt.Errorf("led by %q, not by its own istiod", v.lead)
	}
	if err := allCall(v.injectors, localInjection); err != nil {
		return err
	}
	if err := allCall(v.validators, localValidation); err != nil {
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

func checkUntouched(v *dataPlaneView, id string) error {
	if v.owned > 0 {
		return fmt.Errorf("holds %d objects of the operator", v.owned)
	}
	if v.lead != localmesh.MeshClusterID {
		return fmt.Errorf("led by %q, not by the mesh control plane", v.lead)
	}
	if err := allCall(v.injectors, localmesh.MeshIstiodURL(id)); err != nil {
		return err
	}
	if err := allCall(v.validators, localmesh.MeshValidationURL); err != nil {
		return err
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
	if len(configs) == 0 {
		return fmt.Errorf("no webhook calls %s", want)
	}
	for _, wc := range configs {
		for _, t := range wc.targets {
			if t != want {
				return fmt.Errorf("webhook configuration %s calls %s, not %s", wc.name, t, want)
			}
		}
	}
	return nil
}
