package render

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// pilotLabels are the chart's labels on the Deployment, Service, ConfigMaps and PDB.
func (r *renderer) pilotLabels(extra map[string]string) map[string]string {
	base := map[string]string{
		"istio.io/rev": "default",
		"install.operator.istio.io/owning-resource": "unknown",
		"operator.istio.io/component":               "Pilot",
		"release":                                   "istiod",
	}
	for k, v := range extra {
		base[k] = v
	}
	return r.labels(base)
}

func (r *renderer) serviceAccount() *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
		Name: "istiod", Namespace: r.in.Namespace,
		Labels: r.labels(map[string]string{"app": "istiod", "release": "istiod"}),
	}}
}

func (r *renderer) service() *corev1.Service {
	port := func(name string, p int32, target int) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: p, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(target)}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: r.in.Namespace,
			Labels: r.pilotLabels(map[string]string{"app": "istiod", "istio": "pilot"})},
		Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{
				port("grpc-xds", 15010, 15010),
				port("https-dns", 15012, 15012),
				port("https-webhook", 443, 15017),
				port("http-monitoring", 15014, 15014),
			},
			Selector: map[string]string{"app": "istiod", "istio": "pilot"},
		},
	}
}

// podDisruptionBudget keeps one istiod up during voluntary disruptions; with a single
// replica it would block node drains, so it is rendered only for more than one.
func (r *renderer) podDisruptionBudget() *policyv1.PodDisruptionBudget {
	if r.in.replicas() <= 1 {
		return nil
	}
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: r.in.Namespace,
			Labels: r.pilotLabels(map[string]string{"app": "istiod", "istio": "pilot"})},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt(1)),
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "istiod", "istio": "pilot"}},
		},
	}
}

func (r *renderer) containerPorts() []corev1.ContainerPort {
	port := func(name string, p int32) corev1.ContainerPort {
		cp := corev1.ContainerPort{ContainerPort: p, Protocol: corev1.ProtocolTCP}
		if r.v.AtLeast(24) {
			cp.Name = name
		}
		return cp
	}
	ports := []corev1.ContainerPort{port("http-debug", 8080), port("grpc-xds", 15010)}
	if r.v.AtLeast(24) {
		ports = append(ports, port("tls-xds", 15012))
	}
	ports = append(ports, port("https-webhooks", 15017))
	if r.v.AtLeast(24) {
		ports = append(ports, port("http-monitoring", 15014))
	}
	return ports
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
}

func (r *renderer) env() []corev1.EnvVar {
	env := []corev1.EnvVar{
		{Name: "REVISION", Value: "default"},
		{Name: "PILOT_CERT_PROVIDER", Value: "istiod"},
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		{Name: "KUBECONFIG", Value: "/var/run/secrets/remote/config"},
	}
	if r.v.AtLeast(23) {
		env = append(env, corev1.EnvVar{Name: "CA_TRUSTED_NODE_ACCOUNTS", Value: r.in.Namespace + "/ztunnel"})
	}
	env = append(env,
		// The operator, not istiod, keeps the injection webhooks' caBundle: until the
		// switch they belong to the mesh control plane and must not be touched. It is
		// where the chart puts its env values.
		corev1.EnvVar{Name: "INJECTION_WEBHOOK_CONFIG_NAME", Value: ""},
		corev1.EnvVar{Name: "PILOT_TRACE_SAMPLING", Value: "1"},
		corev1.EnvVar{Name: "PILOT_ENABLE_ANALYSIS", Value: "false"},
		corev1.EnvVar{Name: "CLUSTER_ID", Value: r.in.ClusterID},
	)
	if r.in.ForeignValidators {
		// An empty name turns istiod's validation controller off (it still serves
		// /validate): it would otherwise set caBundle and failurePolicy of the remote
		// profile's validators before the switch (pilot/pkg/bootstrap/validation.go).
		env = append(env, corev1.EnvVar{Name: "VALIDATION_WEBHOOK_CONFIG_NAME", Value: ""})
	}
	limit := func(name, res string, divisor *resource.Quantity) corev1.EnvVar {
		sel := &corev1.ResourceFieldSelector{Resource: res}
		if divisor != nil {
			sel.Divisor = *divisor
		}
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: sel}}
	}
	// The chart gives GOMAXPROCS a divisor of 1 from 1.24 and GOMEMLIMIT from 1.26,
	// and drops GOMEMLIMIT in 1.29.
	var cpuDivisor, memoryDivisor *resource.Quantity
	if r.v.AtLeast(24) {
		cpuDivisor = ptr.To(resource.MustParse("1"))
	}
	if r.v.AtLeast(26) {
		memoryDivisor = ptr.To(resource.MustParse("1"))
	}
	if !r.v.AtLeast(29) {
		env = append(env, limit("GOMEMLIMIT", "limits.memory", memoryDivisor))
	}
	env = append(env, limit("GOMAXPROCS", "limits.cpu", cpuDivisor))
	return append(env, corev1.EnvVar{Name: "PLATFORM", Value: ""})
}

func optionalSecret(name, secret string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: secret, Optional: ptr.To(true)}}}
}

func (r *renderer) volumes() ([]corev1.Volume, []corev1.VolumeMount) {
	volumes := []corev1.Volume{
		{Name: "local-certs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: "istio-ca", ExpirationSeconds: ptr.To[int64](43200), Path: "istio-token"}}}}}},
		optionalSecret("cacerts", "cacerts"),
		optionalSecret("istio-kubeconfig", "istio-kubeconfig"),
		optionalSecret("istio-csr-dns-cert", "istiod-tls"),
		{Name: "istio-csr-ca-configmap", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "istio-ca-root-cert"},
			DefaultMode:          ptr.To[int32](420), Optional: ptr.To(true)}}},
	}
	mounts := []corev1.VolumeMount{
		{Name: "istio-token", MountPath: "/var/run/secrets/tokens", ReadOnly: true},
		{Name: "local-certs", MountPath: "/var/run/secrets/istio-dns"},
		{Name: "cacerts", MountPath: "/etc/cacerts", ReadOnly: true},
		{Name: "istio-kubeconfig", MountPath: "/var/run/secrets/remote", ReadOnly: true},
		{Name: "istio-csr-dns-cert", MountPath: "/var/run/secrets/istiod/tls", ReadOnly: true},
		{Name: "istio-csr-ca-configmap", MountPath: "/var/run/secrets/istiod/ca", ReadOnly: true},
	}
	return volumes, mounts
}

// CACertsAnnotation on istiod's pod template follows its signing CA, so a renewed
// intermediate rolls istiod (istiod reads cacerts once, at start).
const CACertsAnnotation = "istio.alibabacloud.com/cacerts"

func (r *renderer) podAnnotations() map[string]string {
	a := map[string]string{"prometheus.io/port": "15014", "prometheus.io/scrape": "true", "sidecar.istio.io/inject": "false"}
	if r.in.CACertsFingerprint != "" {
		a[CACertsAnnotation] = r.in.CACertsFingerprint
	}
	return a
}

func (r *renderer) deployment() *appsv1.Deployment {
	e := r.in.Entry
	volumes, mounts := r.volumes()
	// The chart's pod labels are pilotLabels without release.
	podLabels := r.labels(map[string]string{
		"app": "istiod", "istio": "pilot", "istio.io/rev": "default", "install.operator.istio.io/owning-resource": "unknown",
		"operator.istio.io/component": "Pilot", "sidecar.istio.io/inject": "false", "istio.io/dataplane-mode": "none",
	})
	tolerations := append([]corev1.Toleration{{Key: "cni.istio.io/not-ready", Operator: corev1.TolerationOpExists}},
		e.Tolerations...)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: r.in.Namespace,
			Labels: r.pilotLabels(map[string]string{"app": "istiod", "istio": "pilot"})},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(r.in.replicas()),
			Strategy: appsv1.DeploymentStrategy{RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxSurge: ptr.To(intstr.FromString("100%")), MaxUnavailable: ptr.To(intstr.FromString("25%"))}},
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"istio": "pilot"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      podLabels,
					Annotations: r.podAnnotations(),
				},
				Spec: corev1.PodSpec{
					ServiceAccountName:        "istiod",
					Tolerations:               tolerations,
					NodeSelector:              e.NodeSelector,
					Affinity:                  e.Affinity,
					TopologySpreadConstraints: e.TopologySpreadConstraints,
					PriorityClassName:         e.PriorityClassName,
					Volumes:                   volumes,
					Containers: []corev1.Container{{
						Name:  "discovery",
						Image: r.in.Hub + "/pilot:" + r.in.Version,
						Args: []string{"discovery", "--monitoringAddr=:15014", "--log_output_level=default:info",
							"--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"},
						Ports: r.containerPorts(),
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt(8080)}},
							InitialDelaySeconds: 1, PeriodSeconds: 3, TimeoutSeconds: 5,
						},
						Env:       r.env(),
						Resources: r.in.resources(),
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							RunAsNonRoot:             ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: mounts,
					}},
				},
			},
		},
	}
}
