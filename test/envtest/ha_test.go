package envtest

import (
	"context"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/manager"
)

// replica is one operator replica that takes part in leader election.
type replica struct {
	stop    context.CancelFunc
	done    chan struct{}
	elected <-chan struct{}
}

// startReplica starts a manager as the installed operator runs it: with leader
// election, and a lease short enough for a test.
func startReplica() *replica {
	opts := operatorOptions()
	opts.Manager.LeaderElection = true
	opts.Manager.LeaderElectionID = "remote-istiod-operator.istio.alibabacloud.com"
	opts.Manager.LeaderElectionNamespace = ns
	opts.Manager.LeaderElectionReleaseOnCancel = true
	opts.Manager.LeaseDuration = ptrTo(4 * time.Second)
	opts.Manager.RenewDeadline = ptrTo(3 * time.Second)
	opts.Manager.RetryPeriod = ptrTo(500 * time.Millisecond)
	opts.Manager.GracefulShutdownTimeout = ptrTo(manager.GracefulShutdownTimeout)
	mgr, err := manager.New(operatorConfig, opts)
	Expect(err).NotTo(HaveOccurred())
	c, stop := context.WithCancel(context.Background())
	r := &replica{stop: stop, done: make(chan struct{}), elected: mgr.GetLocalManager().Elected()}
	go func() {
		defer GinkgoRecover()
		defer close(r.done)
		Expect(mgr.Start(c)).To(Succeed())
	}()
	return r
}

var _ = Describe("two replicas", Ordered, func() {
	It("restarts each gateway exactly once when the leader is stopped in the middle of a switch", func() {
		Expect(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{})).
			To(Satisfy(apierrors.IsNotFound), "another test left the ASMMeshConfig behind")
		rc := remotes["cluster-2"]
		// The suite's own manager makes way for two replicas that elect a leader.
		stopMgr()
		Eventually(mgrDone).Should(BeClosed())
		first := startReplica()
		second := startReplica()
		DeferCleanup(func() {
			rc.link.SetLatency(0)
			first.stop()
			second.stop()
			Eventually(first.done).Should(BeClosed())
			Eventually(second.done).Should(BeClosed())
			startManager()
			removeMeshConfig()
			Eventually(rc.ownedNames).Should(BeEmpty())
			rc.expectAsBefore()
		})

		Expect(mesh.Create(ctx(), &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
			Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{"cluster-2": entry(1)}}})).To(Succeed())
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("True/Applied"))
		// Counted from here: other containers, which may run first, switch cluster-2 too.
		generations := map[string]string{}
		for _, gw := range gatewayNames {
			restart := rc.restarts()[gw]
			Expect(restart).NotTo(HavePrefix("switch-"), "%s is not restarted before the switch", gw)
			_, gen, _ := strings.Cut(restart, "@")
			n, err := strconv.Atoi(gen)
			Expect(err).NotTo(HaveOccurred())
			generations[gw] = "@" + strconv.Itoa(n+1)
		}

		// Every request to cluster-2 takes a third of a second, so the leader is stopped
		// while it restarts the gateways one by one.
		rc.link.SetLatency(300 * time.Millisecond)
		rc.markAvailable()
		Eventually(func() bool {
			for _, v := range rc.restarts() {
				if strings.HasPrefix(v, "switch-") {
					return true
				}
			}
			return false
		}, 2*time.Minute, 20*time.Millisecond).Should(BeTrue())
		leader, follower := first, second
		if !isLeader(first) {
			leader, follower = second, first
		}
		Expect(isLeader(follower)).To(BeFalse(), "two leaders")
		leader.stop()
		restartedByLeader := countSwitched(rc.restarts())
		Eventually(leader.done).Should(BeClosed())
		Expect(restartedByLeader).To(BeNumerically("<", len(gatewayNames)), "the leader was stopped after the switch, not in the middle of it")

		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionSwitched) }, 2*time.Minute).
			Should(Equal("True/" + controller.ReasonSwitched))
		Consistently(func() int { return countSwitched(rc.restarts()) }, 3*time.Second).Should(Equal(len(gatewayNames)))
		tokens := map[string]bool{}
		for _, gw := range gatewayNames {
			v := rc.restarts()[gw]
			Expect(v).To(HaveSuffix(generations[gw]), "gateway %s was restarted %s", gw, v)
			tokens[strings.Split(v, "@")[0]] = true
		}
		Expect(tokens).To(HaveLen(1), "both replicas restarted for the same switch")
		Expect(isLeader(follower)).To(BeTrue(), "the follower took over")
	})
})

// isLeader reports whether the replica has been elected.
func isLeader(r *replica) bool {
	select {
	case <-r.elected:
		return true
	default:
		return false
	}
}

func countSwitched(restarts map[string]string) int {
	n := 0
	for _, v := range restarts {
		if strings.HasPrefix(v, "switch-") {
			n++
		}
	}
	return n
}
