package churn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// skipNoIPv6 skips the test when ::1 cannot be listened on.
func skipNoIPv6(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	l.Close()
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// states returns the socket states on port, failing the test on error.
func states(t *testing.T, ipv6 bool, port uint16) [16]int {
	t.Helper()
	st, err := tcpStates(ipv6, port)
	if err != nil {
		t.Fatalf("reading /proc/net/tcp: %v", err)
	}
	return st
}

func TestRunCompletes(t *testing.T) {
	const n = 200
	tests := []struct {
		close   Close
		ipv6    bool
		payload int
	}{
		{CloseServer, false, 0},
		{CloseClient, false, 0},
		{CloseServer, false, 100},
		{CloseClient, false, 100},
		{CloseServer, false, 100_000}, // larger than one read and the inline limit
		{CloseClient, false, 100_000},
		{CloseServer, true, 0},
		{CloseClient, true, 10},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/ipv6=%v/payload=%d", tt.close, tt.ipv6, tt.payload)
		t.Run(name, func(t *testing.T) {
			if tt.ipv6 {
				skipNoIPv6(t)
			}
			res, err := Run(t.Context(), Config{
				Connections: n, Concurrency: 4, Close: tt.close,
				IPv6: tt.ipv6, Payload: tt.payload,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Connections != n || res.ConnectErrors != 0 || res.EADDRNOTAVAIL != 0 || res.ConnectCalls != n {
				t.Errorf("got %d connections, %d connect errors (%d EADDRNOTAVAIL), %d connect calls; want %d, 0, 0, %d",
					res.Connections, res.ConnectErrors, res.EADDRNOTAVAIL, res.ConnectCalls, n, n)
			}
			if want := n*TransitionsPerConnection + ListenerTransitions; res.Transitions != want {
				t.Errorf("Transitions = %d, want %d", res.Transitions, want)
			}
			if res.Elapsed <= 0 || res.PerSecond <= 0 {
				t.Errorf("Elapsed = %v, PerSecond = %v, want both > 0", res.Elapsed, res.PerSecond)
			}
			if res.ServerPID != os.Getpid() {
				t.Errorf("ServerPID = %d, want %d", res.ServerPID, os.Getpid())
			}
			ap, err := netip.ParseAddrPort(res.ServerAddr)
			if err != nil {
				t.Fatalf("ServerAddr %q: %v", res.ServerAddr, err)
			}
			want := netip.MustParseAddr("127.0.0.1")
			if tt.ipv6 {
				want = netip.IPv6Loopback()
			}
			if ap.Addr() != want || ap.Port() == 0 {
				t.Errorf("ServerAddr = %v, want %v with a port", ap, want)
			}
			// Run settles before it returns: only TIME_WAIT may remain,
			// on the side that closed first.
			st := states(t, tt.ipv6, ap.Port())
			for s, c := range st {
				if c != 0 && s != stateTimeWait {
					t.Errorf("%d sockets on port %d in state %#x after Run, want only TIME_WAIT (%#x)", c, ap.Port(), s, stateTimeWait)
				}
			}
		})
	}
}

func TestRunConcurrencyAboveConnections(t *testing.T) {
	res, err := Run(t.Context(), Config{Connections: 3, Concurrency: 50, Close: CloseServer})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connections != 3 {
		t.Errorf("Connections = %d, want 3", res.Connections)
	}
}

func TestConfigValidation(t *testing.T) {
	ok := Config{Connections: 1, Concurrency: 1, Close: CloseServer}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"zero connections", func(c *Config) { c.Connections = 0 }, "connections must be > 0"},
		{"negative concurrency", func(c *Config) { c.Concurrency = -1 }, "concurrency must be > 0"},
		{"empty close", func(c *Config) { c.Close = "" }, "close must be client, server or leak"},
		{"bad close", func(c *Config) { c.Close = "both" }, `got "both"`},
		{"negative rate", func(c *Config) { c.Rate = -1 }, "rate must be"},
		{"NaN rate", func(c *Config) { c.Rate = nan() }, "rate must be"},
		{"negative payload", func(c *Config) { c.Payload = -1 }, "payload must be >= 0"},
		{"ipv6 with target", func(c *Config) { c.IPv6, c.Target = true, "127.0.0.1:1" }, "ipv6"},
		{"hold outside leak", func(c *Config) { c.Hold = time.Second }, "hold only applies"},
		{"hold with target", func(c *Config) { c.Close, c.Hold, c.Target = CloseLeak, time.Second, "127.0.0.1:1" }, "hold only applies"},
		{"target without port", func(c *Config) { c.Target = "127.0.0.1" }, "want host:port"},
		{"target port 0", func(c *Config) { c.Target = "127.0.0.1:0" }, "port 0"},
		{"leak beyond fd limit", func(c *Config) { c.Close, c.Connections = CloseLeak, 1<<30 }, "ulimit -n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			res, err := Run(t.Context(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run: err = %v, want one containing %q", err, tt.want)
			}
			if res.Transitions != -1 {
				t.Errorf("Transitions = %d after a failed run, want -1", res.Transitions)
			}
		})
	}
}

// nan hides math.NaN from the table's composite literal.
func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestParseClose(t *testing.T) {
	for _, s := range []string{"client", "server", "leak"} {
		if c, err := ParseClose(s); err != nil || string(c) != s {
			t.Errorf("ParseClose(%q) = %q, %v", s, c, err)
		}
	}
	if _, err := ParseClose("Server"); err == nil {
		t.Error(`ParseClose("Server") succeeded, want an error`)
	}
}

// freePort returns a loopback port nothing listens on (for a moment).
func freePort(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	return ap
}

func TestConnectErrors(t *testing.T) {
	target := freePort(t).String()

	_, err := Run(t.Context(), Config{Connections: 10, Concurrency: 2, Close: CloseServer, Target: target})
	if err == nil || !strings.Contains(err.Error(), "(ECONNREFUSED)") || !strings.HasPrefix(err.Error(), "connect "+target) {
		t.Errorf("without KeepGoing: err = %v, want connect %s: ... (ECONNREFUSED) ...", err, target)
	}

	res, err := Run(t.Context(), Config{Connections: 10, Concurrency: 2, Close: CloseServer, Target: target, KeepGoing: true})
	if err != nil {
		t.Fatalf("with KeepGoing: %v", err)
	}
	if res.Connections != 0 || res.ConnectErrors != 10 || res.EADDRNOTAVAIL != 0 || res.ConnectCalls != 10 || res.Transitions != -1 {
		t.Errorf("with KeepGoing: got %+v, want 0 connections, 10 connect errors and calls, 0 EADDRNOTAVAIL, transitions -1", res)
	}
}

func TestConnectErrorMessage(t *testing.T) {
	ap := netip.MustParseAddrPort("127.0.0.1:8080")
	err := &net.OpError{Op: "dial", Net: "tcp4", Err: os.NewSyscallError("connect", syscall.EADDRNOTAVAIL)}
	got := connectError(ap, err).Error()
	want := "connect 127.0.0.1:8080: cannot assign requested address (EADDRNOTAVAIL): the local port range is exhausted"
	if !strings.HasPrefix(got, want) {
		t.Errorf("got %q, want it to start with %q", got, want)
	}
	if got := connectError(ap, errors.New("boom")).Error(); got != "connect 127.0.0.1:8080: boom" {
		t.Errorf("non-errno error: got %q", got)
	}
	if got := errnoName(syscall.Errno(200)); got != "errno 200" {
		t.Errorf("errnoName(200) = %q", got)
	}
}

func TestPayloadMismatch(t *testing.T) {
	srv, err := Listen(t.Context(), "tcp4", "127.0.0.1:0", CloseServer, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_, err = Run(t.Context(), Config{Connections: 5, Concurrency: 1, Close: CloseServer, Target: srv.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "sent 10 bytes before closing, want 0") {
		t.Errorf("err = %v, want a payload mismatch", err)
	}
}

func TestExternalTarget(t *testing.T) {
	for _, mode := range []Close{CloseClient, CloseServer} {
		t.Run(string(mode), func(t *testing.T) {
			srv, err := Listen(t.Context(), "tcp", "127.0.0.1:0", mode, 3)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			// A name, not an address, to go through the resolver.
			target := net.JoinHostPort("localhost", fmt.Sprint(srv.Addr().Port()))
			res, err := Run(t.Context(), Config{Connections: 50, Concurrency: 3, Close: mode, Payload: 3, Target: target})
			if err != nil {
				t.Fatal(err)
			}
			if res.Connections != 50 || res.Transitions != -1 || res.ServerPID != 0 {
				t.Errorf("got %+v, want 50 connections, transitions -1, server pid 0", res)
			}
			// The clients may finish before the server saw every EOF.
			waitFor(t, 5*time.Second, "the server to handle 50 connections", func() bool { return srv.Handled() == 50 })
			if srv.Open() != 0 || srv.Err() != nil {
				t.Errorf("server: %d open, err %v; want 0, nil", srv.Open(), srv.Err())
			}
		})
	}
}

func TestLeakServer(t *testing.T) {
	const n = 100
	srv, err := Listen(t.Context(), "tcp4", "127.0.0.1:0", CloseLeak, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	port := srv.Addr().Port()

	res, err := Run(t.Context(), Config{Connections: n, Concurrency: 4, Close: CloseLeak, Target: srv.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connections != n || res.Transitions != -1 {
		t.Errorf("got %+v, want %d connections, transitions -1", res, n)
	}
	waitFor(t, 5*time.Second, "every connection to be held", func() bool { return srv.Held() == n })
	if srv.Open() != n {
		t.Errorf("Open() = %d, want %d", srv.Open(), n)
	}
	if st := states(t, false, port); st[stateCloseWait] != n {
		t.Errorf("%d sockets in CLOSE_WAIT on port %d, want %d", st[stateCloseWait], port, n)
	}

	if got := srv.Release(); got != n {
		t.Errorf("Release() = %d, want %d", got, n)
	}
	waitFor(t, 5*time.Second, "CLOSE_WAIT sockets to go", func() bool { return states(t, false, port)[stateCloseWait] == 0 })
	if srv.Open() != 0 || srv.Held() != 0 {
		t.Errorf("after Release: Open() = %d, Held() = %d, want 0", srv.Open(), srv.Held())
	}
	// Still serving after Release.
	if _, err := Run(t.Context(), Config{Connections: 5, Concurrency: 1, Close: CloseLeak, Target: srv.Addr().String()}); err != nil {
		t.Errorf("run after Release: %v", err)
	}
}

func TestRunLeakHold(t *testing.T) {
	const n, hold = 50, 300 * time.Millisecond
	var seen Result
	var closeWait int
	start := time.Now()
	res, err := Run(t.Context(), Config{
		Connections: n, Concurrency: 4, Close: CloseLeak, Hold: hold,
		OnHold: func(r Result) {
			seen = r
			ap := netip.MustParseAddrPort(r.ServerAddr)
			closeWait = states(t, false, ap.Port())[stateCloseWait]
		},
	})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if seen != res {
		t.Errorf("OnHold got %+v, Run returned %+v", seen, res)
	}
	if closeWait != n {
		t.Errorf("%d sockets in CLOSE_WAIT during the hold, want %d", closeWait, n)
	}
	if took < hold {
		t.Errorf("Run took %v, want at least the %v hold", took, hold)
	}
	// Run's whole time is the connections (Elapsed) plus the hold, so
	// Elapsed leaves the hold out exactly when the rest is at least the
	// hold, however slow the machine made the connections.
	if took-res.Elapsed < hold {
		t.Errorf("Elapsed = %v of %v in Run: it includes the %v hold", res.Elapsed, took, hold)
	}
	if res.Connections != n || res.Transitions != -1 {
		t.Errorf("got %+v, want %d connections, transitions -1", res, n)
	}
	port := netip.MustParseAddrPort(res.ServerAddr).Port()
	waitFor(t, 5*time.Second, "CLOSE_WAIT sockets to go", func() bool { return states(t, false, port)[stateCloseWait] == 0 })
}

func TestRunLeakHoldUntilCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	held := false
	res, err := Run(ctx, Config{
		Connections: 20, Concurrency: 2, Close: CloseLeak, Hold: -1,
		OnHold: func(Result) { held = true; cancel() },
	})
	if err != nil || !held || res.Connections != 20 {
		t.Errorf("Run = %+v, %v (held %v); want 20 connections, nil error after the hold", res, err, held)
	}
}

func TestRunCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	// Slow enough that the run is still going when ctx is cancelled.
	res, err := Run(ctx, Config{Connections: 1000, Concurrency: 2, Close: CloseServer, Rate: 50})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if res.Connections >= 1000 || res.Transitions != -1 {
		t.Errorf("got %+v, want a partial result with transitions -1", res)
	}
}

func TestRate(t *testing.T) {
	// 40 attempts at 200/s are 39 intervals of 5ms: at least 195ms. The
	// upper bound only catches a limiter that is badly off.
	const n, rate = 40, 200.0
	res, err := Run(t.Context(), Config{Connections: n, Concurrency: 4, Close: CloseServer, Rate: rate})
	if err != nil {
		t.Fatal(err)
	}
	minimum := time.Duration(float64(n-1) / rate * float64(time.Second))
	if res.Elapsed < minimum || res.Elapsed > 20*minimum {
		t.Errorf("Elapsed = %v, want between %v and %v", res.Elapsed, minimum, 20*minimum)
	}
	if res.PerSecond > rate*1.05 {
		t.Errorf("PerSecond = %.1f, want at most %v", res.PerSecond, rate)
	}
}

func TestLimiterSpacing(t *testing.T) {
	// Many goroutines share one limiter; the slots they get must be one
	// interval apart however they interleave.
	l := &limiter{start: time.Now(), interval: time.Millisecond}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			timer := time.NewTimer(time.Hour)
			timer.Stop()
			for range 10 {
				if err := l.wait(t.Context(), timer); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if took := time.Since(l.start); took < 79*time.Millisecond {
		t.Errorf("80 slots 1ms apart took %v", took)
	}
	if next := time.Duration(l.next.Load()); next < 80*time.Millisecond {
		t.Errorf("next slot at %v, want at least 80ms", next)
	}
}

func TestServerClose(t *testing.T) {
	srv, err := Listen(t.Context(), "tcp4", "127.0.0.1:0", CloseClient, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A client that never closes: the handler waits for its FIN.
	c, err := net.Dial("tcp4", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, 5*time.Second, "the connection to be accepted", func() bool { return srv.Open() == 1 })

	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on a connection whose client never closes")
	}
	<-srv.Done()
	if srv.Open() != 0 || srv.Err() != nil || srv.Handled() != 0 {
		t.Errorf("after Close: Open %d, Err %v, Handled %d; want 0, nil, 0", srv.Open(), srv.Err(), srv.Handled())
	}
	srv.Close() // idempotent
}

func TestListenCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	srv, err := Listen(ctx, "tcp4", "127.0.0.1:0", CloseServer, 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-srv.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("server still accepting after its context was cancelled")
	}
	srv.Close()
}

func TestListenErrors(t *testing.T) {
	if _, err := Listen(t.Context(), "tcp4", "127.0.0.1:0", "sideways", 0); err == nil {
		t.Error("bad close mode accepted")
	}
	if _, err := Listen(t.Context(), "tcp4", "127.0.0.1:0", CloseServer, -1); err == nil {
		t.Error("negative payload accepted")
	}
	if _, err := Listen(t.Context(), "udp", "127.0.0.1:0", CloseServer, 0); err == nil {
		t.Error("udp accepted")
	}
	if _, err := Listen(t.Context(), "tcp4", "127.0.0.1", CloseServer, 0); err == nil {
		t.Error("address without a port accepted")
	}
}

func TestCountStates(t *testing.T) {
	const text = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:9C40 08 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 0 10 -1
   2: 0100007F:9C40 0100007F:1F90 05 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 0 10 -1
   3: 0100007F:9C42 0100007F:1F91 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
   4: garbage
`
	got, err := countStates(strings.NewReader(text), 0x1F90)
	if err != nil {
		t.Fatal(err)
	}
	var want [16]int
	want[stateListen], want[stateCloseWait], want[0x05] = 1, 1, 1
	if got != want {
		t.Errorf("countStates = %v, want %v", got, want)
	}
	const v6 = `  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:A000 01 0
`
	got, _ = countStates(strings.NewReader(v6), 0x1F90)
	if got[stateEstablished] != 1 {
		t.Errorf("IPv6 line not counted: %v", got)
	}
}

func TestRunCancelUnblocksSilentServer(t *testing.T) {
	// A server that accepts but never writes or closes: in server mode the
	// clients wait for its FIN forever unless cancellation reaches them.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Config{Connections: 10, Concurrency: 2, Close: CloseServer, Target: l.Addr().String()})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run still blocked 5s after its context expired")
	}
}
