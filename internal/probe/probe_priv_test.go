package probe

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/testutil/testnet"
)

// collector runs a probe and gathers its events through a Resolver.
type collector struct {
	p    *Probe
	res  *event.Resolver
	mu   sync.Mutex
	evs  []event.Event
	done chan error
}

func startProbe(t *testing.T, cfg Config) *collector {
	t.Helper()
	cfg.Poll = 20 * time.Millisecond
	p, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	c := &collector{p: p, res: event.NewResolver(p.HZ()), done: make(chan error, 1)}
	t.Cleanup(func() { _ = p.Close() })
	emit := func(e *event.Event) { c.evs = append(c.evs, *e) }
	go func() {
		for {
			_, err := p.Poll(func(e *event.Event) {
				c.mu.Lock()
				c.res.Feed(e, emit)
				c.mu.Unlock()
			})
			switch {
			case err == nil, errors.Is(err, ErrIdle):
			case errors.Is(err, ErrClosed):
				c.mu.Lock()
				c.res.Flush(^uint64(0), emit)
				c.mu.Unlock()
				c.done <- nil
				return
			default:
				c.done <- err
				return
			}
		}
	}()
	return c
}

// stop detaches, drains and returns every event, checking nothing was
// dropped.
func (c *collector) stop(t *testing.T) []event.Event {
	t.Helper()
	if err := c.p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatalf("reading: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader did not finish after Stop")
	}
	loss, err := c.p.Loss()
	if err != nil || loss.Total() != 0 {
		t.Fatalf("loss = %+v, %v; want none", loss, err)
	}
	// Every record the kernel wrote was read.
	if loss.Written != loss.Read || loss.Read == 0 {
		t.Fatalf("kernel wrote %d records, %d read", loss.Written, loss.Read)
	}
	return c.evs
}

// lives groups transitions by socket, splitting a socket address that the
// kernel reused at each CLOSE, and renders each life as "A->B,B->C".
func lives(evs []event.Event) map[string]int {
	open := map[uint64][]string{}
	out := map[string]int{}
	for _, e := range evs {
		if e.Kind != event.Transition {
			continue
		}
		open[e.Sock] = append(open[e.Sock], e.OldState.String()+"->"+e.NewState.String())
		if e.NewState == event.Close {
			out[strings.Join(open[e.Sock], ",")]++
			delete(open, e.Sock)
		}
	}
	for _, l := range open {
		out[strings.Join(l, ",")+",…"]++
	}
	return out
}

const (
	clientFirst = "CLOSE->SYN_SENT,SYN_SENT->ESTABLISHED,ESTABLISHED->FIN_WAIT1,FIN_WAIT1->FIN_WAIT2,FIN_WAIT2->CLOSE"
	passiveEnd  = "LISTEN->SYN_RECV,SYN_RECV->ESTABLISHED,ESTABLISHED->CLOSE_WAIT,CLOSE_WAIT->LAST_ACK,LAST_ACK->CLOSE"
	serverFirst = "LISTEN->SYN_RECV,SYN_RECV->ESTABLISHED,ESTABLISHED->FIN_WAIT1,FIN_WAIT1->FIN_WAIT2,FIN_WAIT2->CLOSE"
	activeEnd   = "CLOSE->SYN_SENT,SYN_SENT->ESTABLISHED,ESTABLISHED->CLOSE_WAIT,CLOSE_WAIT->LAST_ACK,LAST_ACK->CLOSE"
)

// churn makes n connections in the namespace (see testnet.Connect).
func churn(network, addr string, n int, serverCloses bool) error {
	return testnet.Connect(network, addr, n, serverCloses)
}

func TestProbeTransitions(t *testing.T) {
	for _, tc := range []struct {
		name         string
		network      string
		addr         string
		family       event.Family
		serverCloses bool
		want         []string
	}{
		{"ipv4/client-closes-first", "tcp4", "127.0.0.1:0", event.IPv4, false, []string{clientFirst, passiveEnd}},
		{"ipv4/server-closes-first", "tcp4", "127.0.0.1:0", event.IPv4, true, []string{serverFirst, activeEnd}},
		{"ipv6/client-closes-first", "tcp6", "[::1]:0", event.IPv6, false, []string{clientFirst, passiveEnd}},
		{"ipv6/server-closes-first", "tcp6", "[::1]:0", event.IPv6, true, []string{serverFirst, activeEnd}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachVariant(t, func(t *testing.T, cfg Config) {
				ns := testnet.New(t)
				// Orphans re-armed visibly: see checkActiveCloserTimeWait.
				ns.Sysctl(t, "net.ipv4.tcp_fin_timeout", "30")
				cfg.NetNS = ns.Inode()
				c := startProbe(t, cfg)
				const n = 20
				ns.Do(t, func() error { return churn(tc.network, tc.addr, n, tc.serverCloses) })
				ns.Settle(t, event.TimeWait)
				evs := c.stop(t)

				got := lives(evs)
				for _, w := range tc.want {
					if got[w] != n {
						t.Errorf("%d sockets lived %s, want %d; all lives: %v", got[w], w, n, got)
					}
				}
				for _, e := range evs {
					if e.Family != tc.family && e.Kind != event.Transition {
						t.Errorf("event of family %s in an %s test", e.Family, tc.family)
					}
				}
				checkActiveCloserTimeWait(t, evs, n)
				checkTimeWaitSide(t, evs, tc.serverCloses)
			})
		})
	}
}

// checkActiveCloserTimeWait checks that each of n connections left one
// mini-socket that ended up TIME_WAIT for 60 s, in either order the kernel
// takes: born TIME_WAIT (the peer's FIN came with or before its ACK of
// ours), or born a FIN_WAIT2 orphan (the ACK came first) and re-armed as
// TIME_WAIT by the FIN. The test must set tcp_fin_timeout to 30 s: with
// the default 60 s the re-arm usually lands in the timer's wheel bucket
// already and the kernel makes it silently, with no record.
func checkActiveCloserTimeWait(t *testing.T, evs []event.Event, n int) {
	t.Helper()
	sub := map[uint64]event.State{} // live mini-sockets' substates
	timeWait, fromOrphans := 0, 0
	for _, e := range evs {
		switch e.Kind {
		case event.TimeWaitStart:
			switch {
			case e.NewState == event.TimeWait && e.DurationNs >= 59e9 && e.DurationNs <= 61e9:
				timeWait++
			case e.NewState == event.FinWait2 && e.DurationNs >= 29e9 && e.DurationNs <= 31e9:
			default:
				t.Errorf("mini-socket start %+v: want TIME_WAIT for 60 s, or a FIN_WAIT2 orphan for tcp_fin_timeout (30 s)", e)
			}
			sub[e.Sock] = e.NewState
		case event.TimeWaitRearm:
			if sub[e.Sock] != event.FinWait2 || e.OldState != event.FinWait2 || e.NewState != event.TimeWait ||
				e.DurationNs < 59e9 || e.DurationNs > 61e9 {
				t.Errorf("re-arm %+v of a mini-socket last seen as %s: want only orphans re-armed, as TIME_WAIT for 60 s", e, sub[e.Sock])
			}
			if sub[e.Sock] == event.FinWait2 {
				fromOrphans++
			}
			sub[e.Sock] = e.NewState
		case event.TimeWaitEnd:
			t.Errorf("mini-socket ended within the test: %+v", e)
		}
	}
	if timeWait+fromOrphans != n || len(sub) != n {
		t.Errorf("%d mini-sockets, %d born TIME_WAIT and %d orphans re-armed as TIME_WAIT: want %d, one per connection",
			len(sub), timeWait, fromOrphans, n)
	}
}

// checkTimeWaitSide checks each TIME_WAIT mini-socket took over the
// 4-tuple of the socket that closed first.
func checkTimeWaitSide(t *testing.T, evs []event.Event, serverCloses bool) {
	t.Helper()
	listenPort := uint16(0)
	for _, e := range evs {
		if e.Kind == event.Transition && e.NewState == event.Listen {
			listenPort = e.Local.Port()
		}
	}
	for _, e := range evs {
		if e.Kind != event.TimeWaitStart {
			continue
		}
		if onServer := e.Local.Port() == listenPort; onServer != serverCloses {
			t.Errorf("TIME_WAIT on %s (listener port %d): want it on the side that closed first", e.Local, listenPort)
		}
	}
}

func TestProbeConnectPID(t *testing.T) {
	ns := testnet.New(t)
	c := startProbe(t, Config{NetNS: ns.Inode()})
	ns.Do(t, func() error { return churn("tcp4", "127.0.0.1:0", 1, false) })
	evs := c.stop(t)
	found := false
	for _, e := range evs {
		if e.Kind == event.Transition && e.OldState == event.Close && e.NewState == event.SynSent {
			found = true
			if int(e.PID) != os.Getpid() {
				t.Errorf("SYN_SENT pid %d, want the connect()ing test process %d", e.PID, os.Getpid())
			}
			if e.Local.Port() != 0 || e.Remote.Port() == 0 {
				t.Errorf("SYN_SENT %s -> %s: want no local port yet, a remote port", e.Local, e.Remote)
			}
		}
		if e.NetNS != ns.Inode() {
			t.Errorf("event from netns %d, want only %d", e.NetNS, ns.Inode())
		}
	}
	if !found {
		t.Fatal("no CLOSE -> SYN_SENT seen")
	}
}

func TestProbeFinWait2Orphan(t *testing.T) { forEachVariant(t, testFinWait2Orphan) }

func testFinWait2Orphan(t *testing.T, cfg Config) {
	ns := testnet.New(t)
	ns.Sysctl(t, "net.ipv4.tcp_fin_timeout", "1")
	cfg.NetNS = ns.Inode()
	c := startProbe(t, cfg)
	var held net.Conn
	ns.Do(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		cl, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		held, err = ln.Accept() // the server never closes it
		if err != nil {
			return err
		}
		return cl.Close()
	})
	defer held.Close()
	// The delayed ACK of the FIN (~40 ms) turns the client into an
	// orphan; tcp_fin_timeout=1 ends it a second later, leaving only the
	// server's CLOSE_WAIT.
	ns.Settle(t, event.CloseWait)
	evs := c.stop(t)
	var start, end *event.Event
	for i, e := range evs {
		switch e.Kind {
		case event.TimeWaitStart:
			start = &evs[i]
		case event.TimeWaitEnd:
			end = &evs[i]
		}
	}
	if start == nil || start.NewState != event.FinWait2 {
		t.Fatalf("start %+v: want a FIN_WAIT2 orphan mini-socket", start)
	}
	if start.DurationNs < 900e6 || start.DurationNs > 1100e6 {
		t.Errorf("orphan expires in %d ns, want tcp_fin_timeout = 1 s", start.DurationNs)
	}
	if end == nil || end.Cause != event.Expired || end.NewState != event.FinWait2 || end.DurationNs < 900e6 {
		t.Fatalf("end %+v: want the orphan expired after ~1 s", end)
	}
}

func TestProbeTimeWaitKilledByReuse(t *testing.T) { forEachVariant(t, testTimeWaitKilledByReuse) }

// killByReuse makes two connections to ln from local port port, the
// server closing first: its TIME_WAIT is killed when the client comes back
// from the same port (the SYN is accepted). keep are the states the
// namespace's sockets may be in between the two (see testnet.WaitSettled).
// Call it inside Do.
func killByReuse(ln net.Listener, port int, keep ...event.State) error {
	d := dialer(port)
	for range 2 {
		cl, err := d.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		s.Close()
		if _, err := cl.Read(make([]byte, 1)); err != io.EOF {
			return fmt.Errorf("want EOF, got %v", err)
		}
		cl.Close()
		// The next connect() must find the server's TIME_WAIT, not
		// the client's socket still waiting for its last ACK.
		if err := testnet.WaitSettled(keep...); err != nil {
			return err
		}
	}
	return nil
}

func testTimeWaitKilledByReuse(t *testing.T, cfg Config) {
	ns := testnet.New(t)
	cfg.NetNS = ns.Inode()
	c := startProbe(t, cfg)
	ns.Do(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		return killByReuse(ln, 45678, event.TimeWait, event.Listen)
	})
	ns.Settle(t, event.TimeWait)
	evs := c.stop(t)
	var kinds []string
	for _, e := range evs {
		if e.Kind == event.TimeWaitStart || e.Kind == event.TimeWaitEnd {
			kinds = append(kinds, e.Kind.String()+":"+e.Cause.String())
		}
	}
	want := []string{"timewait_start:", "timewait_end:killed", "timewait_start:"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("mini-socket events %v, want %v", kinds, want)
	}
}

func TestProbeEADDRNOTAVAIL(t *testing.T) {
	ns := testnet.New(t)
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40003")
	ns.Sysctl(t, "net.ipv4.tcp_tw_reuse", "0")
	c := startProbe(t, Config{NetNS: ns.Inode()})
	var dialErr error
	ns.Do(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.2:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		// Client closes first: each connection leaves a TIME_WAIT holding
		// one of the four local ports, and the fifth connect() finds none.
		// Raw system calls: Go's net.Dial retries connect() on
		// EADDRNOTAVAIL, and each try is a failure the kernel reports.
		sa := &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 2}, Port: ln.Addr().(*net.TCPAddr).Port}
		for range 10 {
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			if err := syscall.Connect(fd, sa); err != nil {
				syscall.Close(fd)
				dialErr = err
				return nil
			}
			s, err := ln.Accept()
			if err != nil {
				return err
			}
			syscall.Close(fd)
			_, _ = s.Read(make([]byte, 1))
			s.Close()
		}
		return errors.New("ten connects through a four-port range all succeeded")
	})
	if !errors.Is(dialErr, syscall.EADDRNOTAVAIL) {
		t.Fatalf("connect failed with %v, want EADDRNOTAVAIL", dialErr)
	}
	evs := c.stop(t)
	var fails []event.Event
	for _, e := range evs {
		if e.Kind == event.ConnectError {
			fails = append(fails, e)
		}
	}
	if len(fails) != 1 {
		for _, f := range fails {
			t.Logf("%+v", f)
		}
		t.Fatalf("%d connect errors, want 1", len(fails))
	}
	if f := fails[0]; int(f.PID) != os.Getpid() || f.Remote.Addr().String() != "127.0.0.2" || f.Remote.Port() == 0 {
		t.Errorf("connect error %+v: want this process and the destination 127.0.0.2", f)
	}
}

// TestProbeThousandConnections checks every transition and every TIME_WAIT
// birth of 1,000 connections arrives, nothing dropped, for IPv4 and IPv6.
func TestProbeThousandConnections(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			forEachVariant(t, func(t *testing.T, cfg Config) { testThousand(t, cfg, tc.network, tc.addr) })
		})
	}
}

func testThousand(t *testing.T, cfg Config, network, addr string) {
	ns := testnet.New(t)
	cfg.NetNS = ns.Inode()
	c := startProbe(t, cfg)
	const n = 1000
	ns.Do(t, func() error { return churn(network, addr, n, true) })
	ns.Settle(t, event.TimeWait)
	evs := c.stop(t)
	got := lives(evs)
	if got[serverFirst] != n || got[activeEnd] != n {
		t.Fatalf("lives %v: want %d of each", got, n)
	}
	transitions, starts := 0, 0
	for _, e := range evs {
		switch e.Kind {
		case event.Transition:
			transitions++
		case event.TimeWaitStart:
			starts++
		}
	}
	// 10 per connection, plus the listener's CLOSE->LISTEN and LISTEN->CLOSE.
	if transitions != 10*n+2 || starts != n {
		t.Errorf("%d transitions and %d TIME_WAIT starts, want %d and %d", transitions, starts, 10*n+2, n)
	}
}

func TestProbeFilters(t *testing.T) { forEachVariant(t, testFilters) }

func testFilters(t *testing.T, cfg Config) {
	ns := testnet.New(t)
	v6 := cfg
	v6.NetNS, v6.Family = ns.Inode(), event.IPv6
	c := startProbe(t, v6)
	ns.Do(t, func() error {
		if err := churn("tcp4", "127.0.0.1:0", 3, false); err != nil {
			return err
		}
		return churn("tcp6", "[::1]:0", 3, false)
	})
	ns.Settle(t, event.TimeWait)
	for _, e := range c.stop(t) {
		if e.Family != event.IPv6 {
			t.Fatalf("IPv6 filter let through %+v", e)
		}
	}

	ns2 := testnet.New(t)
	port := cfg
	port.NetNS, port.Port = ns2.Inode(), 45999
	c = startProbe(t, port)
	ns2.Do(t, func() error {
		if err := churn("tcp4", "127.0.0.1:45999", 2, true); err != nil {
			return err
		}
		return churn("tcp4", "127.0.0.1:0", 2, true)
	})
	ns2.Settle(t, event.TimeWait)
	evs := c.stop(t)
	if len(evs) == 0 {
		t.Fatal("port filter let nothing through")
	}
	for _, e := range evs {
		if e.Local.Port() != 45999 && e.Remote.Port() != 45999 {
			t.Fatalf("port filter let through %s -> %s", e.Local, e.Remote)
		}
	}
}

// TestPIDHelperProcess is not a test: TestProbePIDFilter runs the test
// binary as a second process that connects to its listener.
func TestPIDHelperProcess(t *testing.T) {
	addr := os.Getenv("TCPTRACE_TEST_DIAL")
	if addr == "" {
		return // run only as the helper process of TestProbePIDFilter
	}
	for range 5 {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

func TestProbePIDFilter(t *testing.T) { forEachVariant(t, testPIDFilter) }

func testPIDFilter(t *testing.T, cfg Config) {
	ns := testnet.New(t)
	cfg.NetNS, cfg.PID = ns.Inode(), uint32(os.Getpid())
	c := startProbe(t, cfg)
	ns.Do(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		buf := make([]byte, 1)
		serve := func() error {
			s, err := ln.Accept()
			if err != nil {
				return err
			}
			defer s.Close()
			if _, err := s.Read(buf); err != io.EOF {
				return fmt.Errorf("want EOF, got %v", err)
			}
			return nil
		}
		// Five connections of our own, client closing first.
		for range 5 {
			cl, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return err
			}
			cl.Close()
			if err := serve(); err != nil {
				return err
			}
		}
		// Five from another process to our listener.
		other := exec.Command(os.Args[0], "-test.run=^TestPIDHelperProcess$")
		other.Env = append(os.Environ(), "TCPTRACE_TEST_DIAL="+ln.Addr().String())
		if err := other.Start(); err != nil {
			return err
		}
		for range 5 {
			if err := serve(); err != nil {
				return err
			}
		}
		return other.Wait()
	})
	ns.Settle(t, event.TimeWait)
	evs := c.stop(t)
	connects, accepted, tw := 0, 0, 0
	for _, e := range evs {
		switch {
		case e.Kind == event.Transition && e.OldState == event.Close && e.NewState == event.SynSent:
			connects++
			if int(e.PID) != os.Getpid() {
				t.Errorf("connect() by pid %d passed a filter for %d", e.PID, os.Getpid())
			}
		case e.Kind == event.Transition && e.OldState == event.Listen && e.NewState == event.SynRecv:
			accepted++
		case e.Kind == event.TimeWaitStart:
			tw++
		}
	}
	// Our five connects; all ten accepted by our listener; the TIME_WAIT
	// of our own five active closes only.
	if connects != 5 || accepted != 10 || tw != 5 {
		t.Errorf("%d connects, %d accepted, %d TIME_WAIT: want 5, 10, 5", connects, accepted, tw)
	}
}

// TestProbePIDFilterPreexistingListener checks that a listener the target
// opened before tracing began still brings in the connections it accepts.
func TestProbePIDFilterPreexistingListener(t *testing.T) {
	ns := testnet.New(t)
	var ln net.Listener
	ns.Do(t, func() error {
		var err error
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	})
	defer ln.Close()
	c := startProbe(t, Config{NetNS: ns.Inode(), PID: uint32(os.Getpid())})
	other := exec.Command("ip", "netns", "exec", ns.Name, os.Args[0], "-test.run=^TestPIDHelperProcess$")
	other.Env = append(os.Environ(), "TCPTRACE_TEST_DIAL="+ln.Addr().String())
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		_, _ = s.Read(make([]byte, 1))
		s.Close()
	}
	if err := other.Wait(); err != nil {
		t.Fatal(err)
	}
	ns.Settle(t, event.TimeWait, event.Listen)
	accepted, closeWait := 0, 0
	for _, e := range c.stop(t) {
		if e.Kind != event.Transition {
			continue
		}
		switch {
		case e.OldState == event.Listen && e.NewState == event.SynRecv:
			accepted++
		case e.NewState == event.CloseWait:
			closeWait++
		case e.OldState == event.Close && e.NewState == event.SynSent:
			t.Errorf("the other process's connect() passed the pid filter")
		}
	}
	if accepted != 5 || closeWait != 5 {
		t.Errorf("%d accepted, %d CLOSE_WAIT seen: want 5 and 5 from the listener opened before tracing", accepted, closeWait)
	}
}

// TestProbeMeasureHooks checks the hooks scripts/breakdown.sh measures
// with: skipped programs record nothing, idle programs record nothing.
func TestProbeMeasureHooks(t *testing.T) {
	ns := testnet.New(t) // first: it skips the test without root
	if _, err := Open(Config{Skip: []string{"nonesuch"}}); err == nil || !strings.Contains(err.Error(), "nonesuch") {
		t.Fatalf("Open with an unknown program to skip: %v", err)
	}
	c := startProbe(t, Config{NetNS: ns.Inode(), Hooks: HooksTracepoints, Skip: []string{"timer_start", "timer_cancel", "timer_expire"}})
	ns.Do(t, func() error { return churn("tcp4", "127.0.0.1:0", 3, true) })
	ns.Settle(t, event.TimeWait)
	transitions := 0
	for _, e := range c.stop(t) {
		if e.Kind != event.Transition {
			t.Fatalf("timer programs skipped, yet %+v", e)
		}
		transitions++
	}
	if transitions != 3*10+2 {
		t.Errorf("%d transitions, want %d", transitions, 3*10+2)
	}

	ns2 := testnet.New(t)
	p, err := Open(Config{NetNS: ns2.Inode(), Idle: true})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	defer p.Close()
	ns2.Do(t, func() error { return churn("tcp4", "127.0.0.1:0", 3, true) })
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if loss, err := p.Loss(); err != nil || loss.Written != 0 {
		t.Fatalf("idle programs wrote %+v, %v", loss, err)
	}
}
