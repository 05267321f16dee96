package envtest

import (
	"context"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/manager"
)

// leaseName is the leader election lease of cmd/main.go, in the operator's own namespace.
const leaseName = manager.LeaderElectionID

// The replicas' lease is short enough for a test.
const (
	leaseDuration = 4 * time.Second
	retryPeriod   = 500 * time.Millisecond
)

// replicaOptions are the options of a manager run as the installed operator runs it,
// with leader election, under a lease identity of the test's choosing so that the
// Lease tells which replica leads.
func replicaOptions(cfg *rest.Config, identity string) (manager.Options, error) {
	opts := operatorOptions()
	opts.Manager.LeaderElection = true
	opts.Manager.LeaderElectionID = leaseName
	opts.Manager.LeaderElectionNamespace = operatorNS
	opts.Manager.LeaderElectionReleaseOnCancel = true
	opts.Manager.LeaseDuration = ptrTo(leaseDuration)
	opts.Manager.RenewDeadline = ptrTo(3 * time.Second)
	opts.Manager.RetryPeriod = ptrTo(retryPeriod)
	opts.Manager.GracefulShutdownTimeout = ptrTo(manager.GracefulShutdownTimeout)
	// As controller-runtime builds its lease lock, with a client timeout below the
	// renew deadline, but with our identity instead of hostname_uuid.
	lockCfg := rest.CopyConfig(cfg)
	lockCfg.Timeout = *opts.Manager.RenewDeadline / 2
	coord, err := coordinationv1client.NewForConfig(rest.AddUserAgent(lockCfg, "leader-election"))
	if err != nil {
		return opts, err
	}
	opts.Manager.LeaderElectionResourceLockInterface = &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: operatorNS, Name: leaseName},
		Client:     coord,
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	return opts, nil
}

// leaseHolder is the identity holding the leader election lease, "" when none.
func leaseHolder() string {
	lease := &coordinationv1.Lease{}
	if err := mesh.Get(ctx(), types.NamespacedName{Namespace: operatorNS, Name: leaseName}, lease); err != nil {
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "reading the lease: %v", err)
		return ""
	}
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// replica is one operator replica in this process.
type replica struct {
	identity string
	stop     context.CancelFunc
	done     chan struct{}
}

func startReplica(identity string) *replica {
	opts, err := replicaOptions(operatorConfig, identity)
	Expect(err).NotTo(HaveOccurred())
	mgr, err := manager.New(operatorConfig, opts)
	Expect(err).NotTo(HaveOccurred())
	c, stop := context.WithCancel(context.Background())
	r := &replica{identity: identity, stop: stop, done: make(chan struct{})}
	go func() {
		defer GinkgoRecover()
		defer close(r.done)
		Expect(mgr.Start(c)).To(Succeed())
	}()
	return r
}

var _ = Describe("two replicas", Ordered, func() {
	// A replica that is stopped (the pod terminates) drains its reconciles and releases
	// the lease; the other takes over at once.
	It("restarts each gateway exactly once when the leader is stopped in the middle of a switch", func() {
		rc := remotes["cluster-2"]
		makeWayForReplicas(rc)
		first, second := startReplica("in-process-a"), startReplica("in-process-b")
		DeferCleanup(func() {
			rc.link.SetLatency(0)
			first.stop()
			second.stop()
			Eventually(first.done).Should(BeClosed())
			Eventually(second.done).Should(BeClosed())
		})

		generations := startSlowSwitch(rc)
		leader, follower := first, second
		if leaseHolder() != first.identity {
			leader, follower = second, first
		}
		Expect(leaseHolder()).To(Equal(leader.identity))
		leader.stop()
		restartedByLeader := countSwitched(rc.restarts())
		Eventually(leader.done).Should(BeClosed())
		Expect(restartedByLeader).To(BeNumerically("<", len(gatewayNames)), "the leader was stopped after the switch, not in the middle of it")
		Expect(leaseHolder()).NotTo(Equal(leader.identity), "the stopped leader did not release its lease")

		expectSwitchedOnce(rc, generations)
		Expect(leaseHolder()).To(Equal(follower.identity), "the follower took over")
	})

	// A replica that is killed (SIGKILL, a node lost) keeps its lease until it expires
	// and leaves its requests cut wherever they were.
	It("restarts each gateway exactly once when the leader is killed in the middle of a switch", func() {
		rc := remotes["cluster-2"]
		makeWayForReplicas(rc)
		first, second := startReplicaProcess("process-a"), startReplicaProcess("process-b")
		DeferCleanup(rc.link.SetLatency, time.Duration(0))

		generations := startSlowSwitch(rc)
		leader, survivor := first, second
		if leaseHolder() != first.identity {
			leader, survivor = second, first
		}
		Expect(leaseHolder()).To(Equal(leader.identity))
		killed := time.Now()
		leader.kill()
		Expect(leader.cmd.ProcessState.String()).To(Equal("signal: killed"), "the leader ran until it was killed")
		// Requests the leader had on the link land or fail within a round trip or two;
		// the survivor cannot act before the lease expires.
		time.Sleep(time.Second)
		restartedByLeader := countSwitched(rc.restarts())
		Expect(leaseHolder()).To(Equal(leader.identity), "the killed leader's lease was released or taken over at once")
		Expect(restartedByLeader).To(BeNumerically("<", len(gatewayNames)), "the leader was killed after the switch, not in the middle of it")

		Eventually(leaseHolder, time.Minute, 50*time.Millisecond).Should(Equal(survivor.identity))
		takeover := time.Since(killed)
		AddReportEntry("takeover after the kill", takeover.String())
		// The survivor waited for the lease to expire (counted from the last renewal it
		// saw, a retry period or two before the kill); a released lease is taken within
		// one retry period.
		Expect(takeover).To(BeNumerically(">=", leaseDuration/2), "the killed leader's lease did not have to expire")
		expectSwitchedOnce(rc, generations)
		Expect(leaseHolder()).To(Equal(survivor.identity), "the survivor leads")
	})
})

// makeWayForReplicas stops the suite's own manager until the spec ends, when it starts
// it again and undoes the switch of rc; cleanups registered later run before.
func makeWayForReplicas(rc *remoteCluster) {
	Expect(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{})).
		To(Satisfy(apierrors.IsNotFound), "another test left the ASMMeshConfig behind")
	stopMgr()
	Eventually(mgrDone).Should(BeClosed())
	DeferCleanup(func() {
		startManager()
		removeMeshConfig()
		Eventually(rc.ownedNames).Should(BeEmpty())
		rc.expectAsBefore()
	})
}

// startSlowSwitch has the replicas switch rc behind a link where every request takes
// a third of a second, so that the gateways are restarted one by one over seconds; it
// returns once the first is, with the generation each gateway must end at.
func startSlowSwitch(rc *remoteCluster) map[string]string {
	Expect(mesh.Create(ctx(), &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
		Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{rc.id: entry(1)}}})).To(Succeed())
	Eventually(func() string { return clusterCondition(rc.id, v1beta1.ConditionApplied) }).Should(Equal("True/Applied"))
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
	rc.link.SetLatency(300 * time.Millisecond)
	rc.markAvailable()
	Eventually(func() int { return countSwitched(rc.restarts()) }, 2*time.Minute, 20*time.Millisecond).Should(BeNumerically(">", 0))
	return generations
}

// expectSwitchedOnce waits for the switch of rc to finish and checks that every gateway
// was restarted once, for one switch.
func expectSwitchedOnce(rc *remoteCluster, generations map[string]string) {
	Eventually(func() string { return clusterCondition(rc.id, v1beta1.ConditionSwitched) }, 2*time.Minute).
		Should(Equal("True/" + controller.ReasonSwitched))
	Consistently(func() int { return countSwitched(rc.restarts()) }, 3*time.Second).Should(Equal(len(gatewayNames)))
	tokens := map[string]bool{}
	for _, gw := range gatewayNames {
		v := rc.restarts()[gw]
		Expect(v).To(HaveSuffix(generations[gw]), "gateway %s was restarted %s", gw, v)
		tokens[strings.Split(v, "@")[0]] = true
	}
	Expect(tokens).To(HaveLen(1), "both replicas restarted for the same switch")
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
