package istiochart

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// DefaultNamespace is where the fixtures install Istio unless told otherwise.
const DefaultNamespace = "istio-system"

// DefaultHub is the image registry MeshControlPlane uses unless told otherwise: the
// istio-discovery chart's own default (global.hub).
const DefaultHub = "registry.istio.io/testing"

// RemoteOptions describe a data-plane cluster installed with Istio's remote profile.
//
// Every address a test could reach is a loopback one: the hosts of InjectionURL and
// ValidationURL, which an API server calls, must be loopback IPs (127.0.0.0/8, ::1),
// localhost or a name under .localhost, so that whatever a test does with the fixture
// stays on this machine. RemotePilotAddress may also be an address of TEST-NET-1
// (DocumentationAddress), which is never routed: an API server refuses loopback
// addresses in the EndpointSlice it ends up in. RemoteProfile refuses any other.
type RemoteOptions struct {
	// Namespace is the control plane namespace, istio-system when empty.
	Namespace string
	// Revision is the istiod revision (revision; base's defaultRevision).
	Revision string
	// ClusterID is the data-plane cluster's ID (global.multiCluster.clusterName).
	ClusterID string
	// Network is the cluster's network (global.network).
	Network string
	// MeshID is the mesh ID (global.meshID).
	MeshID string
	// RemotePilotAddress is where the mesh's istiod is reached
	// (global.remotePilotAddress). An IP gives a selector-less Service istiod and an
	// EndpointSlice holding the IP; a host name gives a Service of type ExternalName.
	// Empty gives neither.
	RemotePilotAddress string
	// InjectionURL, when set, is the URL the sidecar injector webhook calls
	// (istiodRemote.injectionURL) instead of the Service istiod.
	InjectionURL string
	// InjectionCABundle is the PEM bundle the injector webhook trusts
	// (istiodRemote.injectionCABundle, which the chart takes base64-encoded).
	InjectionCABundle []byte
	// ValidationURL, when set, is the URL istiod-default-validator calls
	// (base.validationURL) instead of the Service istiod.
	ValidationURL string
	// ValidationCABundle is the PEM bundle the validator trusts (base.validationCABundle).
	ValidationCABundle []byte
	// ConfigCluster makes the cluster the config cluster of an external istiod
	// (global.configCluster): the chart then also renders istiod's ServiceAccount,
	// roles and its own validating webhook.
	ConfigCluster bool
	// CompatibilityVersion selects the defaults of an older Istio minor, such as
	// "1.29" (compatibilityVersion).
	CompatibilityVersion string
	// CRDs keeps the base chart's CustomResourceDefinitions.
	CRDs bool
	// Values are further istio-discovery values, merged over those the options set.
	Values map[string]any
	// BaseValues are further base chart values, merged over those the options set.
	BaseValues map[string]any
}

// RemoteProfile returns the objects of a data-plane cluster installed with Istio's
// remote profile, as
//
//	helm install istio-base istio/base -n istio-system --set profile=remote
//	helm install istiod istio/istiod -n istio-system --set profile=remote \
//	  --set global.remotePilotAddress=<addr> ...
//
// (or `istioctl install --set profile=remote`) installs them: the istio-discovery chart
// with profile remote, which renders the sidecar injector (but no istiod Deployment,
// no mesh ConfigMap and no injector ConfigMap) and, for a remote pilot address, the
// Service istiod that leads to it; and the base chart, with the validator
// istiod-default-validator and the reader ServiceAccount.
//
// Unless InjectionURL is set, the injector calls the Service istiod at the path Istio's
// docs give the remote profile, /inject/cluster/<ClusterID>/net/<Network>
// (istiodRemote.injectionPath), which tells the mesh's istiod which cluster and network
// the pod is in.
func RemoteProfile(opts RemoteOptions) ([]*unstructured.Unstructured, error) {
	ns := opts.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	if err := checkPilotAddress(opts.RemotePilotAddress); err != nil {
		return nil, err
	}
	if err := checkLoopbackURL("InjectionURL", opts.InjectionURL); err != nil {
		return nil, err
	}
	if err := checkLoopbackURL("ValidationURL", opts.ValidationURL); err != nil {
		return nil, err
	}

	global := map[string]any{"istioNamespace": ns}
	setIf(global, "remotePilotAddress", opts.RemotePilotAddress)
	setIf(global, "network", opts.Network)
	setIf(global, "meshID", opts.MeshID)
	if opts.ClusterID != "" {
		global["multiCluster"] = map[string]any{"clusterName": opts.ClusterID}
	}
	if opts.ConfigCluster {
		global["configCluster"] = true
	}
	remote := map[string]any{}
	if opts.InjectionURL != "" {
		remote["injectionURL"] = opts.InjectionURL
	} else {
		remote["injectionPath"] = InjectionPath(opts.ClusterID, opts.Network)
	}
	if len(opts.InjectionCABundle) > 0 {
		remote["injectionCABundle"] = base64.StdEncoding.EncodeToString(opts.InjectionCABundle)
	}
	discovery := map[string]any{"profile": "remote", "global": global, "istiodRemote": remote}
	setIf(discovery, "revision", opts.Revision)
	setIf(discovery, "compatibilityVersion", opts.CompatibilityVersion)
	discovery = merge(discovery, opts.Values)

	baseValues := map[string]any{"profile": "remote", "global": map[string]any{"istioNamespace": ns}}
	setIf(baseValues, "defaultRevision", opts.Revision)
	setIf(baseValues, "compatibilityVersion", opts.CompatibilityVersion)
	validation := map[string]any{}
	setIf(validation, "validationURL", opts.ValidationURL)
	if len(opts.ValidationCABundle) > 0 {
		validation["validationCABundle"] = base64.StdEncoding.EncodeToString(opts.ValidationCABundle)
	}
	if len(validation) > 0 {
		baseValues["base"] = validation
	}
	baseValues = merge(baseValues, opts.BaseValues)

	var baseOpts []Option
	if opts.CRDs {
		baseOpts = append(baseOpts, WithCRDs())
	}
	objs, err := Render(Base, "istio-base", ns, baseValues, baseOpts...)
	if err != nil {
		return nil, err
	}
	istiod, err := Render(Discovery, releaseName(opts.Revision), ns, discovery)
	if err != nil {
		return nil, err
	}
	objs = append(objs, istiod...)
	sortObjects(objs)
	return objs, nil
}

// InjectionPath is the sidecar injection path that tells the mesh's istiod the
// cluster and network of the pod: /inject/cluster/<clusterID>/net/<network>, or a
// shorter one when either is empty.
func InjectionPath(clusterID, network string) string {
	p := "/inject"
	if clusterID != "" {
		p += "/cluster/" + clusterID
	}
	if network != "" {
		p += "/net/" + network
	}
	return p
}

// MeshOptions describe the mesh cluster's own istiod, a primary installed with the
// default profile.
type MeshOptions struct {
	// Namespace is the control plane namespace, istio-system when empty.
	Namespace string
	// Revision is the istiod revision (revision).
	Revision string
	// Hub and Tag name the images (global.hub, global.tag): DefaultHub and Version()
	// when empty, so that the image is always an explicit one rather than the chart's
	// "latest".
	Hub, Tag string
	// ClusterID is the mesh cluster's ID (global.multiCluster.clusterName).
	ClusterID string
	// Network is the cluster's network (global.network).
	Network string
	// MeshID is the mesh ID (global.meshID).
	MeshID string
	// CompatibilityVersion selects the defaults of an older Istio minor, such as
	// "1.29" (compatibilityVersion).
	CompatibilityVersion string
	// Values are further istio-discovery values, merged over those the options set:
	// meshConfig, global.proxy, pilot settings and so on.
	Values map[string]any
}

// MeshControlPlane returns the mesh cluster's own istiod objects as the
// istio-discovery chart renders them for a primary with the default profile, as
// `helm install istiod istio/istiod -n istio-system` does: the istiod Deployment and
// Service, the mesh ConfigMap istio, the injector ConfigMap istio-sidecar-injector,
// the webhooks, RBAC and the rest.
func MeshControlPlane(opts MeshOptions) ([]*unstructured.Unstructured, error) {
	ns := opts.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	hub, tag := opts.Hub, opts.Tag
	if hub == "" {
		hub = DefaultHub
	}
	if tag == "" {
		tag = Version()
	}
	global := map[string]any{"istioNamespace": ns, "hub": hub, "tag": tag}
	setIf(global, "network", opts.Network)
	setIf(global, "meshID", opts.MeshID)
	if opts.ClusterID != "" {
		global["multiCluster"] = map[string]any{"clusterName": opts.ClusterID}
	}
	values := map[string]any{"global": global}
	setIf(values, "revision", opts.Revision)
	setIf(values, "compatibilityVersion", opts.CompatibilityVersion)
	values = merge(values, opts.Values)
	return Render(Discovery, releaseName(opts.Revision), ns, values)
}

// releaseName is the release name Istio's install docs give istiod.
func releaseName(revision string) string {
	if revision == "" {
		return "istiod"
	}
	return "istiod-" + revision
}

func setIf(m map[string]any, key, value string) {
	if value != "" {
		m[key] = value
	}
}

// DocumentationAddress is the remote pilot address of the IP flavour in fixtures. The
// API server refuses loopback addresses in EndpointSlices, so it is an address of
// TEST-NET-1 (RFC 5737), which is never routed; nothing dials it, because with a
// loopback Service range the API server calls a Service-backed webhook at the
// Service's ClusterIP, not at its endpoints.
const DocumentationAddress = "192.0.2.1"

var documentationRange = netip.MustParsePrefix("192.0.2.0/24")

// checkPilotAddress accepts what checkLoopbackHost does and, as the remote pilot
// address only ends up in an EndpointSlice, addresses of TEST-NET-1 (DocumentationAddress).
func checkPilotAddress(addr string) error {
	if ip, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil && documentationRange.Contains(ip) {
		return nil
	}
	if err := checkLoopbackHost("RemotePilotAddress", addr); err != nil {
		return fmt.Errorf("%w, or %s for an endpoint address", err, documentationRange)
	}
	return nil
}

// checkLoopbackHost accepts an empty host, a loopback IP, localhost and names under
// .localhost (RFC 6761: they resolve to loopback).
func checkLoopbackHost(field, host string) error {
	if host == "" {
		return nil
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s %s is not a loopback address: fixtures stay on 127.0.0.0/8, ::1 or localhost", field, host)
		}
		return nil
	}
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h != "localhost" && !strings.HasSuffix(h, ".localhost") {
		return fmt.Errorf("%s %s is not a loopback address: fixtures stay on 127.0.0.0/8, ::1 or localhost", field, host)
	}
	return nil
}

func checkLoopbackURL(field, raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%s %s has no host", field, raw)
	}
	return checkLoopbackHost(field, u.Hostname())
}
