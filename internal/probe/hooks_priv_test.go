package probe

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/testutil/testnet"
)

// variant is one way of loading the probe that a kernel may support.
type variant struct {
	name string
	cfg  Config
}

var (
	fentryOnce sync.Once
	fentryErr  error
)

// fentryAllowed reports why this kernel refuses the function hooks, nil if
// it allows them. scripts/test-kernels.sh sets TCPTRACE_TEST_FENTRY=1 on
// kernels known to allow them (Debian's), where a refusal is a failure.
func fentryAllowed(t *testing.T) error {
	t.Helper()
	fentryOnce.Do(func() {
		p, err := Open(Config{Hooks: HooksFentry, NetNS: 1})
		if err == nil {
			p.Close()
		}
		fentryErr = err
	})
	if fentryErr != nil && os.Getenv("TCPTRACE_TEST_FENTRY") == "1" {
		t.Fatalf("TCPTRACE_TEST_FENTRY=1 but fentry does not attach: %v", fentryErr)
	}
	return fentryErr
}

// forEachVariant runs fn once per way of loading the probe this kernel
// allows: the timer tracepoints with each read variant the kernel
// supports, and the function hooks where they attach. Every test that
// follows mini-sockets runs on each, so both hook sets and both builds
// are held to the same expectations.
func forEachVariant(t *testing.T, fn func(t *testing.T, cfg Config)) {
	t.Helper()
	testnet.RequireRoot(t)
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	rdonly := hasFunc(kernel, "bpf_rdonly_cast")
	for _, v := range []variant{
		{"tracepoints", Config{Hooks: HooksTracepoints}},
		{"tracepoints-probe-read", Config{Hooks: HooksTracepoints, ProbeReads: true}},
		{"fentry", Config{Hooks: HooksFentry}},
	} {
		t.Run(v.name, func(t *testing.T) {
			switch {
			case v.cfg.ProbeReads && !rdonly:
				t.Skip("the tracepoints variant already uses probe reads: this kernel lacks bpf_rdonly_cast")
			case v.cfg.Hooks == HooksFentry:
				if err := fentryAllowed(t); err != nil {
					t.Skipf("this kernel refuses fentry: %v", err)
				}
			}
			fn(t, v.cfg)
		})
	}
}

// miniLives renders each mini-socket's resolved events in order, as
// "start:TIME_WAIT end:killed:TIME_WAIT", keyed by its 4-tuple.
func miniLives(evs []event.Event) []string {
	byTuple := map[string][]string{}
	var order []string
	for _, e := range evs {
		var s string
		switch e.Kind {
		case event.TimeWaitStart:
			s = "start:" + e.NewState.String()
		case event.TimeWaitRearm:
			s = "rearm:" + e.OldState.String() + ">" + e.NewState.String()
		case event.TimeWaitEnd:
			s = "end:" + e.Cause.String() + ":" + e.NewState.String()
		default:
			continue
		}
		k := e.Local.String() + ">" + e.Remote.String()
		if _, ok := byTuple[k]; !ok {
			order = append(order, k)
		}
		byTuple[k] = append(byTuple[k], s)
	}
	var out []string
	for _, k := range order {
		out = append(out, strings.Join(byTuple[k], " "))
	}
	sort.Strings(out)
	return out
}

// dialer binds connections to a fixed local port, so that a later one
// reuses the 4-tuple of an earlier one's TIME_WAIT.
func dialer(port int) net.Dialer {
	return net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			})
			return errors.Join(err, serr)
		}}
}

// TestProbeHooksSameLives drives every kind of mini-socket life through
// each hook set and checks each reports them exactly: an orphan that
// expires, an orphan promoted to TIME_WAIT by the peer's late FIN (a
// re-arm), a TIME_WAIT killed by a SYN reusing its 4-tuple, and the
// TIME_WAIT that follows.
func TestProbeHooksSameLives(t *testing.T) {
	want := []string{
		"start:FIN_WAIT2 end:expired:FIN_WAIT2",
		"start:FIN_WAIT2 rearm:FIN_WAIT2>TIME_WAIT",
		"start:TIME_WAIT end:killed:TIME_WAIT start:TIME_WAIT",
	}
	forEachVariant(t, func(t *testing.T, cfg Config) {
		ns := testnet.New(t)
		// Orphans end after a second, and the promoted one's timer moves
		// from 1 s to 60 s: a re-arm the timer wheel cannot do silently.
		ns.Sysctl(t, "net.ipv4.tcp_fin_timeout", "1")
		cfg.NetNS = ns.Inode()
		c := startProbe(t, cfg)
		var held []net.Conn
		defer func() {
			for _, h := range held {
				h.Close()
			}
		}()
		ns.Do(t, func() error {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer ln.Close()
			open := func(d net.Dialer) (client, server net.Conn, err error) {
				if client, err = d.Dial("tcp4", ln.Addr().String()); err != nil {
					return nil, nil, err
				}
				server, err = ln.Accept()
				return client, server, err
			}
			// The orphan that expires: the server never closes.
			cl, srv, err := open(net.Dialer{})
			if err != nil {
				return err
			}
			held = append(held, srv)
			cl.Close()
			// The promoted orphan: the server closes after the delayed ACK
			// of the client's FIN (40 ms) made the client an orphan.
			cl, srv, err = open(net.Dialer{})
			if err != nil {
				return err
			}
			cl.Close()
			// Once the client is an orphan, not in FIN_WAIT1 any more.
			if err := testnet.WaitSettled(event.Listen, event.CloseWait, event.FinWait2); err != nil {
				return err
			}
			srv.Close()
			// The TIME_WAIT killed by reuse, beside the two orphans (one
			// now TIME_WAIT) and the server socket held in CLOSE_WAIT.
			return killByReuse(ln, 45679, event.TimeWait, event.Listen, event.FinWait2, event.CloseWait)
		})
		ns.WaitGone(t, event.FinWait2) // the first orphan expires
		got := miniLives(c.stop(t))
		for i, l := range got {
			if !strings.HasSuffix(l, " start:TIME_WAIT") {
				continue
			}
			// The server side of the reused 4-tuple may itself have been
			// a FIN_WAIT2 orphan for a moment, when the client's ACK came
			// before its FIN (normal, and common under emulation). The
			// timer wheel may move a timer within its bucket silently;
			// the function hooks see every re-arm.
			l = strings.Replace(l, "start:FIN_WAIT2 rearm:FIN_WAIT2>TIME_WAIT", "start:TIME_WAIT", 1)
			if cfg.Hooks == HooksTracepoints {
				l = strings.Replace(l, "start:FIN_WAIT2 end:killed:TIME_WAIT", "start:TIME_WAIT end:killed:TIME_WAIT", 1)
			}
			got[i] = l
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("mini-socket lives:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	})
}

// TestProbeHookRuns counts, from the kernel's own per-program statistics
// (bpf_stats run_cnt: exact, even under emulation), how often the
// mini-socket programs run per connection with each hook set, for the same
// traffic: server-closes-first connections, each leaving a TIME_WAIT that
// the namespace's teardown then kills, so both birth and death are
// counted. It fails unless the function hooks are the cheaper set.
func TestProbeHookRuns(t *testing.T) {
	testnet.RequireRoot(t)
	// Statistics slow every BPF program on the machine a little while on:
	// only where there are two hook sets to compare.
	if err := fentryAllowed(t); err != nil {
		t.Skipf("only one hook set to measure: this kernel refuses fentry: %v", err)
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enabling BPF run statistics: %v", err)
	}
	defer stats.Close()
	const n = 200
	perConn := map[string]float64{}
	forEachVariant(t, func(t *testing.T, cfg Config) {
		ns := testnet.New(t)
		cfg.NetNS = ns.Inode()
		c := startProbe(t, cfg)
		ns.Do(t, func() error { return churn("tcp4", "127.0.0.1:0", n, true) })
		// Ten transitions per connection and the listener's two, a birth
		// and, once the namespace is gone, a death per mini-socket.
		ns.Delete(t)
		want := uint64(12*n + 2)
		deadline := time.Now().Add(30 * time.Second)
		for {
			loss, err := c.p.Loss()
			if err != nil {
				t.Fatal(err)
			}
			if loss.Written >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d records written, want %d once the namespace is gone", loss.Written, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
		runs := map[string]uint64{}
		for i, prog := range c.p.minis.progs {
			st, err := prog.Stats()
			if err != nil {
				t.Fatal(err)
			}
			runs[c.p.minis.hooks[i].name] = st.RunCount
		}
		evs := c.stop(t)
		starts, ends := 0, 0
		for _, e := range evs {
			switch {
			case e.Kind == event.TimeWaitStart:
				starts++
			case e.Kind == event.TimeWaitEnd && e.Cause == event.Killed:
				ends++
			}
		}
		if starts != n || ends != n {
			t.Fatalf("%d TIME_WAIT starts and %d killed, want %d of each", starts, ends, n)
		}
		var total uint64
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(runs)) {
			total += runs[name]
			parts = append(parts, fmt.Sprintf("%s %.2f", name, float64(runs[name])/n))
		}
		perConn[fmt.Sprint(cfg.Hooks, cfg.ProbeReads)] = float64(total) / n
		build := "bpf_rdonly_cast build"
		if c.p.ProbeReads() {
			build = "probe-read build"
		}
		t.Logf("runs per connection: %s (%s): %.2f (%s) for %d connections, TIME_WAIT born and killed",
			c.p.Hooks(), build, float64(total)/n, strings.Join(parts, ", "), n)
	})
	tp, fe := perConn["tracepoints false"], perConn["fentry false"]
	if fe != 0 && (fe > 3 || fe >= tp) {
		t.Errorf("function hooks ran %.2f times per connection, timer tracepoints %.2f: want at most 3, and fewer", fe, tp)
	}
}
