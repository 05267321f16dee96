// Package farlink simulates the link to a far-away cluster in tests and benchmarks: a
// TCP proxy on loopback in front of an API server, which can refuse connections,
// accept them and never answer, or add latency and a bandwidth limit. It counts the
// connections and bytes that cross it.
package farlink

import (
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what the link does with traffic.
type Mode int32

const (
	// Up forwards traffic (after the configured latency and bandwidth).
	Up Mode = iota
	// Down refuses new connections and cuts the open ones, like a host that is gone.
	Down
	// Hung accepts connections and forwards nothing in either direction, like a link
	// that drops every packet: requests wait until the client gives up.
	Hung
)

func (m Mode) String() string {
	switch m {
	case Up:
		return "up"
	case Down:
		return "down"
	case Hung:
		return "hung"
	}
	return "unknown"
}

// Stats count what crossed the link since it started.
type Stats struct {
	// Connections accepted.
	Connections int64
	// Open is how many of them are open now: with Connections, a window's count of
	// connections that crossed the link is Open at its start plus those accepted in it.
	Open int64
	// BytesToServer and BytesToClient forwarded.
	BytesToServer, BytesToClient int64
}

// Link is one simulated far link. Its zero latency and unlimited bandwidth make it a
// plain proxy until a test asks for more.
type Link struct {
	target string
	addr   string

	mu       sync.Mutex
	mode     Mode
	latency  time.Duration // one way
	bps      int64         // bytes per second and direction, 0 is unlimited
	listener net.Listener
	conns    map[net.Conn]struct{}
	wake     chan struct{} // closed and replaced whenever the mode changes
	closed   bool

	connections, open, toServer, toClient atomic.Int64
	wg                                    sync.WaitGroup
}

// Start listens on a free loopback port and forwards to target (host:port).
func Start(target string) (*Link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &Link{target: target, addr: ln.Addr().String(), listener: ln, conns: map[net.Conn]struct{}{}, wake: make(chan struct{})}
	l.wg.Add(1)
	go l.serve(ln)
	return l, nil
}

// StartFor starts a link in front of the API server at serverURL (https://host:port)
// and returns it with the URL to use instead.
func StartFor(serverURL string) (*Link, string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, "", err
	}
	l, err := Start(u.Host)
	if err != nil {
		return nil, "", err
	}
	u.Host = l.Addr()
	return l, u.String(), nil
}

// Addr is the host:port clients dial.
func (l *Link) Addr() string { return l.addr }

// Stats returns the counters.
func (l *Link) Stats() Stats {
	return Stats{Connections: l.connections.Load(), Open: l.open.Load(), BytesToServer: l.toServer.Load(), BytesToClient: l.toClient.Load()}
}

// SetLatency sets the round-trip time the link adds (half in each direction).
func (l *Link) SetLatency(rtt time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.latency = rtt / 2
}

// SetBandwidth limits each direction to bitsPerSecond; 0 removes the limit.
func (l *Link) SetBandwidth(bitsPerSecond int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bps = bitsPerSecond / 8
}

// Mode returns the current mode.
func (l *Link) Mode() Mode {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mode
}

// SetMode changes what the link does. Down closes the listener, so connecting is
// refused, and cuts open connections; Up listens again on the same address; Hung
// keeps every connection open and stalls it.
func (l *Link) SetMode(m Mode) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.mode == m {
		return nil
	}
	prev := l.mode
	l.mode = m
	close(l.wake)
	l.wake = make(chan struct{})
	switch {
	case m == Down:
		_ = l.listener.Close()
		l.listener = nil
		for c := range l.conns {
			_ = c.Close()
		}
	case prev == Down:
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return err
		}
		l.listener = ln
		l.wg.Add(1)
		go l.serve(ln)
	}
	if prev == Hung {
		// Connections stalled while hung carry requests the client has long given up
		// on; a link that comes back does not deliver them late.
		for c := range l.conns {
			_ = c.Close()
		}
	}
	return nil
}

// Close stops the link and cuts every connection.
func (l *Link) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	if l.listener != nil {
		_ = l.listener.Close()
	}
	for c := range l.conns {
		_ = c.Close()
	}
	close(l.wake)
	l.mu.Unlock()
	l.wg.Wait()
}

func (l *Link) serve(ln net.Listener) {
	defer l.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		l.connections.Add(1)
		if !l.track(c) {
			_ = c.Close()
			continue
		}
		l.open.Add(1)
		l.wg.Add(1)
		go l.handle(c)
	}
}

func (l *Link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.mode == Down {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *Link) untrack(cs ...net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cs {
		delete(l.conns, c)
		_ = c.Close()
	}
}

func (l *Link) handle(client net.Conn) {
	defer l.wg.Done()
	defer l.open.Add(-1)
	// A hung link dials nothing until it is up again: a server behind a link that
	// drops packets never sees the connection.
	if !l.waitUp() {
		l.untrack(client)
		return
	}
	server, err := net.DialTimeout("tcp", l.target, 10*time.Second)
	if err != nil {
		l.untrack(client)
		return
	}
	if !l.track(server) {
		l.untrack(client, server)
		return
	}
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); l.pump(server, client, &l.toServer) }()
	go func() { defer pumps.Done(); l.pump(client, server, &l.toClient) }()
	pumps.Wait()
	l.untrack(client, server)
}

// waitUp blocks while the link is hung and reports whether it may forward.
func (l *Link) waitUp() bool {
	for {
		l.mu.Lock()
		mode, wake, closed := l.mode, l.wake, l.closed
		l.mu.Unlock()
		switch {
		case closed || mode == Down:
			return false
		case mode == Up:
			return true
		}
		<-wake
	}
}

// chunk is the most a pump forwards at once, so latency and bandwidth apply to
// pieces the size of a few TCP segments.
const chunk = 16 << 10

// pump copies src to dst with the link's latency and bandwidth, stalling while hung.
func (l *Link) pump(dst, src net.Conn, count *atomic.Int64) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	type piece struct {
		data []byte
		due  time.Time
	}
	// Reading goes on while earlier pieces wait out their latency, so latency adds to
	// every piece once instead of queueing up: a pipe, not a relay.
	pieces := make(chan piece, 1024)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(pieces)
		buf := make([]byte, chunk)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				l.mu.Lock()
				lat := l.latency
				l.mu.Unlock()
				select {
				case pieces <- piece{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(lat)}:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	var sendFree time.Time // when the bandwidth allows the next byte out
	for p := range pieces {
		if !l.waitUp() {
			return
		}
		l.mu.Lock()
		bps := l.bps
		l.mu.Unlock()
		due := p.due
		if bps > 0 {
			if sendFree.Before(time.Now()) {
				sendFree = time.Now()
			}
			sendFree = sendFree.Add(time.Duration(int64(len(p.data)) * int64(time.Second) / bps))
			if sendFree.After(due) {
				due = sendFree
			}
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if !l.waitUp() {
			return
		}
		// Counted before the write returns: the peer may act on the bytes (and a test
		// read the counters) before this goroutine runs again.
		count.Add(int64(len(p.data)))
		if _, err := dst.Write(p.data); err != nil {
			return
		}
	}
}
