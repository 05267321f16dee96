package envtest

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

// Across a far link the mirror and the switch take seconds after istiod is applied.
var _ = Describe("progress across a far link", Ordered, func() {
	BeforeAll(func() {
		Expect(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{})).
			To(Satisfy(apierrors.IsNotFound), "another test left the ASMMeshConfig behind")
		rc := remotes["cluster-1"]
		rc.link.SetLatency(200 * time.Millisecond)
		DeferCleanup(func() {
			rc.link.SetLatency(0)
			removeMeshConfig()
			Eventually(rc.ownedNames).Should(BeEmpty())
			rc.expectAsBefore()
		})
	})

	// watchPass reads the status until the mirror reported on the current generation and
	// returns whether Applied was read at that generation before it, and anything that
	// said the cluster was ready for that generation before the pass ended.
	watchPass := func() (early bool, wrong []string) {
		Eventually(func(g Gomega) {
			mc := getMeshConfig()
			var cs *v1beta1.ClusterStatus
			for i := range mc.Status.Clusters {
				if mc.Status.Clusters[i].ClusterID == "cluster-1" {
					cs = &mc.Status.Clusters[i]
				}
			}
			g.Expect(cs).NotTo(BeNil())
			gen := mc.Generation
			applied := meta.FindStatusCondition(cs.Conditions, v1beta1.ConditionApplied)
			mirrored := meta.FindStatusCondition(cs.Conditions, v1beta1.ConditionConfigMirrored)
			mirroredNow := mirrored != nil && mirrored.ObservedGeneration == gen
			if applied != nil && applied.Status == metav1.ConditionTrue && applied.ObservedGeneration == gen && !mirroredNow {
				early = true
				if r := meta.FindStatusCondition(cs.Conditions, v1beta1.ConditionReady); r != nil && r.Status == metav1.ConditionTrue &&
					(r.ObservedGeneration == gen || cs.ObservedGeneration == gen) {
					wrong = append(wrong, fmt.Sprintf("the entry's Ready (observedGeneration %d, entry's %d, generation %d)", r.ObservedGeneration, cs.ObservedGeneration, gen))
				}
				if readyCondition() == "True/Ready" {
					wrong = append(wrong, fmt.Sprintf("the ASMMeshConfig's Ready at generation %d", gen))
				}
			}
			g.Expect(mirroredNow).To(BeTrue())
		}, 2*time.Minute, 20*time.Millisecond).Should(Succeed())
		return early, wrong
	}

	It("reports Applied as soon as istiod is applied, and Ready only once the pass has looked at everything", func() {
		Expect(mesh.Create(ctx(), &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
			Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{
				"cluster-1": entry(1)}}})).To(Succeed())
		early, wrong := watchPass()
		Expect(early).To(BeTrue(), "Applied was written only with the mirror's report, at the end of the pass")
		Expect(wrong).To(BeEmpty())

		// A change of a Ready cluster: Ready of the old generation must not be carried
		// over to the new one before the pass ends.
		rc := remotes["cluster-1"]
		rc.markAvailable()
		Eventually(readyCondition, 2*time.Minute).Should(Equal("True/Ready"))
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.ExternalIstiodConfigurations["cluster-1"] = entry(2) })
		early, wrong = watchPass()
		Expect(early).To(BeTrue(), "the replicas change was reported Applied only at the end of the pass")
		Expect(wrong).To(BeEmpty())
		Eventually(func() int32 { return *rc.deployment().Spec.Replicas }).Should(BeEquivalentTo(2))
	})
})
