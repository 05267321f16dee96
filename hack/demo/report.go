package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
)

// report prints the ASMMeshConfig as kubectl get shows it, the conditions of each
// cluster, and what runs in each data-plane cluster.
func report(ctx context.Context, m *localmesh.Mesh, before map[string]*dataPlaneView, out *printer) error {
	out.step("kubectl get asmmeshconfig")
	table, err := meshConfigTable(ctx, m.Mesh.Config)
	if err != nil {
		return err
	}
	out.lines(table)

	mc, err := meshConfig(ctx, m)
	if err != nil {
		return err
	}
	out.step("Conditions of each cluster (status.clusters)")
	for _, cs := range mc.Status.Clusters {
		switched := "not switched"
		if cs.SwitchedAt != nil {
			switched = "switched at " + cs.SwitchedAt.UTC().Format("15:04:05Z")
		}
		out.line("%s: istiod %d/%d ready, Istio %s, %d Istio objects mirrored, %s",
			cs.ClusterID, cs.ReadyReplicas, cs.DesiredReplicas, cs.IstioVersion, cs.MirroredObjects, switched)
		if cs.MeshSettings != "" {
			out.line("  mesh settings: %s", cs.MeshSettings)
		}
		rows := [][]string{{"TYPE", "STATUS", "REASON", "MESSAGE"}}
		for _, c := range cs.Conditions {
			rows = append(rows, []string{c.Type, string(c.Status), c.Reason, c.Message})
		}
		out.lines("  " + strings.ReplaceAll(tabulate(rows), "\n", "\n  "))
	}

	out.step("What runs in each data-plane cluster")
	for _, dp := range m.DataPlanes {
		v, err := inspect(ctx, dp)
		if err != nil {
			return err
		}
		out.line("%s:", dp.ID)
		out.lines(tabulate(describe(dp.ID, v, before[dp.ID])))
	}
	return nil
}

// describe turns a data-plane cluster's view into rows of what and where; before is
// the cluster as localmesh installed it.
func describe(id string, v, before *dataPlaneView) [][]string {
	rows := [][]string{}
	if v.istiod == nil {
		rows = append(rows, []string{"  istiod", "none: sidecars use the mesh control plane"})
	} else {
		rows = append(rows, []string{"  istiod", fmt.Sprintf("Deployment %s/%s, %d/%d available, image %s", v.istiod.Namespace, v.istiod.Name,
			v.istiod.Status.AvailableReplicas, *v.istiod.Spec.Replicas, v.istiod.Spec.Template.Spec.Containers[0].Image)})
	}
	rows = append(rows, []string{"  led by", "istiod of " + v.lead + " (namespace annotation topology.istio.io/controlPlaneClusters)"})
	if before != nil {
		rows = append(rows, []string{"  Service istiod before", before.address.String()})
	}
	rows = append(rows, []string{"  Service istiod now", v.address.String()})
	if s := v.settings; s != nil {
		rows = append(rows, []string{"  mesh settings", fmt.Sprintf("outboundTrafficPolicy %s, accessLogFile %s, proxy memory limit %s (the operator's ConfigMaps istio and istio-sidecar-injector)",
			s.outboundTrafficPolicy, s.accessLogFile, s.proxyMemoryLimit)})
	}
	for _, wc := range v.injectors {
		rows = append(rows, []string{"  injector " + wc.name, webhookTargets(id, wc.targets, v.address)})
	}
	for _, wc := range v.validators {
		rows = append(rows, []string{"  validator " + wc.name, webhookTargets(id, wc.targets, v.address)})
	}
	rows = append(rows, []string{"  operator's objects", fmt.Sprintf("%d, of which %d Istio CRDs and %d mirrored Istio objects", v.owned, v.crds, len(v.mirrored))})
	for _, name := range v.mirrored {
		rows = append(rows, []string{"    mirrored", name})
	}
	for _, name := range slices.Sorted(maps.Keys(v.restarts)) {
		restart := "not restarted"
		if v.restarts[name] != "" {
			restart = "restarted for " + v.restarts[name]
		}
		rows = append(rows, []string{"  Deployment " + name, restart})
	}
	return rows
}

// serviceAddress is how the targets of webhooks that call Service istio-system/istiod begin.
var serviceAddress = "https://istiod." + localmesh.Namespace + ".svc:"

// webhookTargets says where the webhooks of one configuration send their requests,
// and whose istiod that is: a webhook that calls Service istiod reaches whichever the
// Service leads to.
func webhookTargets(id string, targets []string, address addressView) string {
	count := map[string]int{}
	for _, t := range targets {
		count[t]++
	}
	var out []string
	for _, t := range slices.Sorted(maps.Keys(count)) {
		whose := ""
		switch {
		case t == localmesh.MeshInjectionURL(id):
			whose = " (the mesh control plane, by URL)"
		case strings.HasPrefix(t, serviceAddress) && address.flavour() == addressLocal:
			whose = " (Service istiod: the cluster's own istiod)"
		case strings.HasPrefix(t, serviceAddress) && address.exists:
			whose = " (Service istiod: the mesh control plane)"
		}
		noun := "webhooks"
		if count[t] == 1 {
			noun = "webhook"
		}
		out = append(out, fmt.Sprintf("%d %s -> %s%s", count[t], noun, t, whose))
	}
	return strings.Join(out, "; ")
}

// meshConfigTable asks the API server for the ASMMeshConfigs as a Table, which it
// builds from the CRD's additionalPrinterColumns, and prints it as kubectl get does.
func meshConfigTable(ctx context.Context, cfg *rest.Config) (string, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return "", err
	}
	raw, err := dc.RESTClient().Get().
		AbsPath("/apis", v1beta1.GroupVersion.Group, v1beta1.GroupVersion.Version, "asmmeshconfigs").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").
		DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("listing ASMMeshConfigs as a table: %w", err)
	}
	table := &metav1.Table{}
	if err := json.Unmarshal(raw, table); err != nil {
		return "", err
	}
	var header []string
	var shown []int
	for i, col := range table.ColumnDefinitions {
		if col.Priority == 0 { // kubectl shows the others with -o wide
			header = append(header, strings.ToUpper(col.Name))
			shown = append(shown, i)
		}
	}
	rows := [][]string{header}
	for _, r := range table.Rows {
		var row []string
		for _, i := range shown {
			cell := "<none>"
			if i < len(r.Cells) && r.Cells[i] != nil {
				cell = fmt.Sprint(r.Cells[i])
			}
			row = append(row, cell)
		}
		rows = append(rows, row)
	}
	return tabulate(rows), nil
}

// tabulate aligns rows in columns as kubectl does.
func tabulate(rows [][]string) string {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 6, 4, 3, ' ', 0)
	for _, r := range rows {
		_, _ = fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
	return strings.TrimRight(buf.String(), "\n")
}
