package envtest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/client-go/tools/clientcmd"
)

// Everything the operator logs, and every status it wrote, is kept so that the suite can
// prove no secret material ever shows up there.
var (
	logs         syncBuffer
	statusSeen   syncBuffer
	secretsMu    sync.Mutex
	secretValues []string
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// rememberSecret records secret material: keys and tokens the tests create or read.
func rememberSecret(value []byte) {
	s := string(value)
	if strings.Contains(s, "-----BEGIN") { // PEM: the body is what must not leak
		var body []string
		for _, line := range strings.Split(s, "\n") {
			if line != "" && !strings.HasPrefix(line, "-----") {
				body = append(body, line)
			}
		}
		s = strings.Join(body, "")
	}
	if len(s) < 16 {
		return
	}
	secretsMu.Lock()
	defer secretsMu.Unlock()
	secretValues = append(secretValues, s[:min(len(s), 48)], base64.StdEncoding.EncodeToString(value)[:32])
}

// rememberKubeconfig records the credentials of a kubeconfig.
func rememberKubeconfig(raw []byte) {
	cfg, err := clientcmd.Load(raw)
	Expect(err).NotTo(HaveOccurred())
	for _, auth := range cfg.AuthInfos {
		rememberSecret(auth.ClientKeyData)
		rememberSecret([]byte(auth.Token))
	}
}

// expectNoLeaks looks for every recorded secret in the logs, the status the operator
// wrote, and the events it recorded.
func expectNoLeaks() {
	events := &eventsv1.EventList{}
	Expect(mesh.List(ctx(), events)).To(Succeed())
	raw, err := json.Marshal(events.Items)
	Expect(err).NotTo(HaveOccurred())
	places := map[string]string{"logs": logs.String(), "status": statusSeen.String(), "events": string(raw)}
	Expect(places["logs"]).NotTo(BeEmpty(), "no logs were captured")
	secretsMu.Lock()
	defer secretsMu.Unlock()
	if suite, _ := GinkgoConfiguration(); len(suite.FocusStrings)+len(suite.FocusFiles) == 0 && suite.LabelFilter == "" {
		// Only the whole suite is sure to record many: a focused run may record few.
		Expect(len(secretValues)).To(BeNumerically(">", 6), "the suite recorded too few secrets to prove anything")
	}
	for where, text := range places {
		for _, secret := range secretValues {
			Expect(strings.Contains(text, secret)).To(BeFalse(), "secret material leaked into %s", where)
		}
	}
}
