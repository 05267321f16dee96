package farlink

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// server answers /small with "ok" and /big with 1 MiB.
func server(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = w.Write(make([]byte, 1<<20))
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	return s
}

func start(t *testing.T, s *httptest.Server) (*Link, string) {
	t.Helper()
	l, u, err := StartFor(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	if !strings.HasPrefix(l.Addr(), "127.0.0.1:") {
		t.Fatalf("the link listens on %s, not on loopback", l.Addr())
	}
	return l, u
}

// get makes one request on a new connection each time, so modes apply to it.
func get(ctx context.Context, u string) (string, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestUpForwardsAndCounts(t *testing.T) {
	l, u := start(t, server(t))
	got, err := get(context.Background(), u+"/small")
	if err != nil || got != "ok" {
		t.Fatalf("got %q, %v", got, err)
	}
	st := l.Stats()
	if st.Connections != 1 || st.BytesToServer == 0 || st.BytesToClient < int64(len("ok")) {
		t.Fatalf("stats after one request: %+v", st)
	}
}

func TestDownRefusesAndUpRestores(t *testing.T) {
	l, u := start(t, server(t))
	if err := l.SetMode(Down); err != nil {
		t.Fatal(err)
	}
	_, err := get(context.Background(), u+"/small")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("a down link must refuse connections, got %v", err)
	}
	if err := l.SetMode(Up); err != nil {
		t.Fatal(err)
	}
	if got, err := get(context.Background(), u+"/small"); err != nil || got != "ok" {
		t.Fatalf("after the link is up again: %q, %v", got, err)
	}
}

func TestDownCutsOpenConnections(t *testing.T) {
	l, _ := start(t, server(t))
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := l.SetMode(Down); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("an open connection must be cut when the link goes down, got %v", err)
	}
}

func TestHungAcceptsAndNeverAnswers(t *testing.T) {
	l, u := start(t, server(t))
	if err := l.SetMode(Hung); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := get(ctx, u+"/small")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a hung link must leave the request unanswered until the client gives up, got %v", err)
	}
	if l.Stats().Connections != 1 {
		t.Fatalf("a hung link accepts the connection: %+v", l.Stats())
	}
	if l.Stats().BytesToClient != 0 {
		t.Fatalf("a hung link forwards nothing: %+v", l.Stats())
	}
	if err := l.SetMode(Up); err != nil {
		t.Fatal(err)
	}
	if got, err := get(context.Background(), u+"/small"); err != nil || got != "ok" {
		t.Fatalf("after the link is up again: %q, %v", got, err)
	}
}

func TestLatencyDelaysEveryRoundTrip(t *testing.T) {
	l, u := start(t, server(t))
	l.SetLatency(200 * time.Millisecond)
	begin := time.Now()
	if _, err := get(context.Background(), u+"/small"); err != nil {
		t.Fatal(err)
	}
	// A request and its answer cross the link once each way at least: one round trip.
	if took := time.Since(begin); took < 200*time.Millisecond {
		t.Fatalf("a request over a 200ms link took %s", took)
	}
}

func TestBandwidthLimitsTransfer(t *testing.T) {
	l, u := start(t, server(t))
	l.SetBandwidth(8 << 20) // 8 Mibit/s: 1 MiB/s
	begin := time.Now()
	got, err := get(context.Background(), u+"/big")
	if err != nil || len(got) != 1<<20 {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
	// 1 MiB at 1 MiB/s, less the first chunk, which goes out at once.
	if took := time.Since(begin); took < 900*time.Millisecond {
		t.Fatalf("1 MiB over a 8 Mibit/s link took %s", took)
	}
}

// Feature: Open counts the connections open across the link now, so that a window can
// count the long-lived ones it did not see being accepted. Fails if a connection is not
// counted while open or is still counted after it closed.
func TestOpenCountsConnectionsUntilTheyClose(t *testing.T) {
	l, _ := start(t, server(t))
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	waitOpen := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for l.Stats().Open != want {
			if time.Now().After(deadline) {
				t.Fatalf("Open is %d, not %d: %+v", l.Stats().Open, want, l.Stats())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitOpen(1)
	_ = c.Close()
	waitOpen(0)
	if st := l.Stats(); st.Connections != 1 {
		t.Fatalf("Connections is %d after one connection", st.Connections)
	}
}
