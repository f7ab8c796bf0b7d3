package census

import (
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/owner"
)

const conns = 3 // connections per family and case

func addrPort(tb testing.TB, a interface{ String() string }) netip.AddrPort {
	tb.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		tb.Fatal(err)
	}
	return ap
}

// waitDump dumps until it returns want sockets that touch one of the
// listeners (local or remote port), or 5 s pass. Loopback is quick but not
// instant: the ACK of a FIN is delayed (the receiver enters pingpong mode),
// so the closing side stays in FIN_WAIT1 for tens of milliseconds.
func waitDump(tb testing.TB, d *Dumper, mask StateMask, want int, lns ...*net.TCPListener) []Socket {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		all, err := d.Dump(mask)
		if err != nil {
			tb.Fatalf("Dump(%v): %v", mask, err)
		}
		got := all[:0]
		for _, s := range all {
			if touches(tb, s, lns) {
				got = append(got, s)
			}
		}
		if len(got) == want || time.Now().After(deadline) {
			if len(got) != want {
				tb.Fatalf("Dump(%v) = %d sockets of the test's listeners, want %d: %+v", mask, len(got), want, got)
			}
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func touches(tb testing.TB, s Socket, lns []*net.TCPListener) bool {
	if len(lns) == 0 {
		return true
	}
	for _, ln := range lns {
		ap := addrPort(tb, ln.Addr())
		if s.Local == ap || s.Remote == ap {
			return true
		}
	}
	return false
}

// expect is a socket the test knows must be reported.
type expect struct {
	family        event.Family
	local, remote netip.AddrPort
	inode         uint64 // 0: must be 0 (mini-socket)
}

type tuple struct{ local, remote netip.AddrPort }

// match checks that got holds exactly the sockets in want, in state.
func match(tb testing.TB, got []Socket, state event.State, want []expect) map[tuple]Socket {
	tb.Helper()
	byTuple := make(map[tuple]Socket, len(got))
	for _, s := range got {
		if s.State != state {
			tb.Errorf("socket %v -> %v: state %v, want %v", s.Local, s.Remote, s.State, state)
		}
		byTuple[tuple{s.Local, s.Remote}] = s
	}
	if len(byTuple) != len(want) || len(got) != len(want) {
		tb.Fatalf("got %d sockets, want %d: %+v", len(got), len(want), got)
	}
	for _, w := range want {
		s, ok := byTuple[tuple{w.local, w.remote}]
		if !ok {
			tb.Errorf("%v socket %v -> %v missing from %+v", state, w.local, w.remote, got)
			continue
		}
		if s.Family != w.family || s.Inode != w.inode {
			tb.Errorf("got %+v, want family %v inode %d", s, w.family, w.inode)
		}
		if s.Cookie == 0 {
			tb.Errorf("socket %v: zero cookie", s.Local)
		}
	}
	return byTuple
}

// TestDumpRealSockets makes CLOSE_WAIT, FIN_WAIT2 and TIME_WAIT sockets on
// loopback inside a fresh network namespace and checks that sock_diag
// reports exactly those, with the right ports and inodes, and that
// owner.Resolve maps the inodes to this process.
func TestDumpRealSockets(t *testing.T) {
	ns := newTestNetns(t)
	ln4 := listen(t, ns, "tcp4", "127.0.0.1:0")
	ln6 := listen(t, ns, "tcp6", "[::1]:0")
	// Each subtest uses listeners of its own, since the sockets an earlier
	// subtest closes linger in TIME_WAIT.
	listeners := func(t *testing.T) (*net.TCPListener, *net.TCPListener) {
		return listen(t, ns, "tcp4", "127.0.0.1:0"), listen(t, ns, "tcp6", "[::1]:0")
	}

	var d *Dumper
	var err error
	ns.do(t, func() { d, err = NewDumper() })
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	// The namespace holds only our two listeners.
	all, err := d.Dump(AllStates)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].State != event.Listen || all[1].State != event.Listen {
		t.Fatalf("fresh namespace: got %+v, want the two listeners", all)
	}
	// The package-level Dump uses the calling thread's namespace.
	ns.do(t, func() { all, err = Dump(Mask(event.Listen)) })
	if err != nil || len(all) != 2 {
		t.Fatalf("Dump(LISTEN) in namespace = %+v, %v; want 2 listeners", all, err)
	}
	if all[0].Local != addrPort(t, ln4.Addr()) || all[1].Local != addrPort(t, ln6.Addr()) {
		t.Errorf("listeners reported as %v, %v; want %v, %v", all[0].Local, all[1].Local, ln4.Addr(), ln6.Addr())
	}

	t.Run("CloseWait", func(t *testing.T) {
		ln4, ln6 := listeners(t)
		// The client closes, the server never does: server sockets in
		// CLOSE_WAIT (held by our fds), client sockets orphaned in FIN_WAIT2.
		var cw, fw2 []expect
		var inodes []uint64
		for _, l := range []struct {
			ln  *net.TCPListener
			fam event.Family
		}{{ln4, event.IPv4}, {ln6, event.IPv6}} {
			pairs := connect(t, ns, l.ln, conns)
			for _, p := range pairs {
				ino := inode(t, p.server)
				inodes = append(inodes, ino)
				cw = append(cw, expect{l.fam, addrPort(t, p.server.LocalAddr()), addrPort(t, p.server.RemoteAddr()), ino})
				fw2 = append(fw2, expect{l.fam, addrPort(t, p.client.LocalAddr()), addrPort(t, p.client.RemoteAddr()), 0})
				if err := p.client.Close(); err != nil {
					t.Fatal(err)
				}
			}
		}
		got := waitDump(t, d, Mask(event.CloseWait), len(cw), ln4, ln6)
		for _, s := range match(t, got, event.CloseWait, cw) {
			if s.UID != uint32(os.Geteuid()) {
				t.Errorf("CLOSE_WAIT %v: uid %d, want %d", s.Local, s.UID, os.Geteuid())
			}
		}

		// The orphaned client sockets are FIN_WAIT2 mini-sockets, but
		// for the kernel's rare exception: when the ACK of the FIN is
		// processed while close() still holds the socket, it stays a full
		// FIN_WAIT2 socket with a keepalive timer (see fullFinWait2 in
		// cmd/tcptrace). Either way no file refers to it (inode 0).
		got = waitDump(t, d, Mask(event.FinWait2), len(fw2), ln4, ln6)
		mini := 0
		for _, s := range match(t, got, event.FinWait2, fw2) {
			switch {
			case s.Timer == TimerKeepalive:
				t.Logf("closed client socket %v stayed a full FIN_WAIT2 socket", s.Local)
			case s.Timer != TimerTimeWait || s.ExpiresMs == 0 || s.ExpiresMs > 60000:
				t.Errorf("FIN_WAIT2 orphan %v: timer %d expires %d ms; want the TIME_WAIT timer, (0, 60000]", s.Local, s.Timer, s.ExpiresMs)
			default:
				mini++
			}
		}
		if mini == 0 {
			t.Errorf("no closed client socket became a FIN_WAIT2 mini-socket: %+v", got)
		}
		// and a TIME_WAIT request does not return them.
		waitDump(t, d, Mask(event.TimeWait), 0, ln4, ln6)

		owners, err := owner.Resolve(os.DirFS("/proc"), inodes)
		if err != nil {
			t.Fatal(err)
		}
		for _, ino := range inodes {
			o, ok := owners[ino]
			if !ok || o.PID != os.Getpid() || o.Holders != 1 {
				t.Errorf("owner of inode %d = %+v (%v), want pid %d", ino, o, ok, os.Getpid())
			}
		}
	})

	t.Run("TimeWait", func(t *testing.T) {
		ln4, ln6 := listeners(t)
		// The server closes first: its socket becomes a FIN_WAIT2 orphan
		// mini-socket, then TIME_WAIT when the client closes too.
		var tw, cw []expect
		var pairs []pair
		for _, l := range []struct {
			ln  *net.TCPListener
			fam event.Family
		}{{ln4, event.IPv4}, {ln6, event.IPv6}} {
			ps := connect(t, ns, l.ln, conns)
			for _, p := range ps {
				tw = append(tw, expect{l.fam, addrPort(t, p.server.LocalAddr()), addrPort(t, p.server.RemoteAddr()), 0})
				cw = append(cw, expect{l.fam, addrPort(t, p.client.LocalAddr()), addrPort(t, p.client.RemoteAddr()), inode(t, p.client)})
				if err := p.server.Close(); err != nil {
					t.Fatal(err)
				}
			}
			pairs = append(pairs, ps...)
		}
		match(t, waitDump(t, d, Mask(event.CloseWait), len(cw), ln4, ln6), event.CloseWait, cw)
		match(t, waitDump(t, d, Mask(event.FinWait2), len(tw), ln4, ln6), event.FinWait2, tw)

		for _, p := range pairs {
			if err := p.client.Close(); err != nil {
				t.Fatal(err)
			}
		}
		got := waitDump(t, d, Mask(event.TimeWait), len(tw), ln4, ln6)
		for _, s := range match(t, got, event.TimeWait, tw) {
			if s.Timer != TimerTimeWait || s.ExpiresMs == 0 || s.ExpiresMs > 60000 || s.UID != 0 {
				t.Errorf("TIME_WAIT %v: timer %d expires %d ms uid %d; want timer 3, (0, 60000], uid 0", s.Local, s.Timer, s.ExpiresMs, s.UID)
			}
		}
		waitDump(t, d, Mask(event.FinWait2, event.CloseWait, event.LastAck), 0, ln4, ln6)
	})

	t.Run("FullFinWait2", func(t *testing.T) {
		ln4, _ := listeners(t)
		// shutdown(SHUT_WR) keeps the fd: a full FIN_WAIT2 socket with an
		// inode, reported under the same state bit as the orphans.
		ps := connect(t, ns, ln4, 1)
		if err := ps[0].client.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		want := []expect{{event.IPv4, addrPort(t, ps[0].client.LocalAddr()), addrPort(t, ps[0].client.RemoteAddr()), inode(t, ps[0].client)}}
		got := waitDump(t, d, Mask(event.FinWait2), 1, ln4)
		match(t, got, event.FinWait2, want)
		if got[0].Timer == TimerTimeWait {
			t.Errorf("full FIN_WAIT2 socket reported with the mini-socket timer: %+v", got[0])
		}
	})

	t.Run("Mask", func(t *testing.T) {
		_, ln6 := listeners(t)
		// A combined mask returns the union; the listeners are excluded.
		// The subtests above left TIME_WAIT sockets behind (their cleanups
		// closed everything); add a CLOSE_WAIT and a FIN_WAIT2 orphan.
		ps := connect(t, ns, ln6, 1)
		if err := ps[0].client.Close(); err != nil {
			t.Fatal(err)
		}
		waitDump(t, d, Mask(event.FinWait2), 1, ln6)
		got, err := d.Dump(Mask(event.CloseWait, event.TimeWait, event.FinWait2))
		if err != nil {
			t.Fatal(err)
		}
		states := map[event.State]int{}
		for _, s := range got {
			states[s.State]++
		}
		for _, k := range slices.Sorted(maps.Keys(states)) {
			if k != event.CloseWait && k != event.TimeWait && k != event.FinWait2 {
				t.Errorf("state %v outside the mask: %v", k, states)
			}
		}
		if states[event.CloseWait] != 1 || states[event.FinWait2] != 1 || states[event.TimeWait] < 1 {
			t.Errorf("union incomplete: %v", states)
		}
	})
}

// TestDumpTCPInfo checks the tcp_info sock_diag returns against the
// kernel's own getsockopt(TCP_INFO) on the same socket, and what tcptrace
// dates a CLOSE_WAIT socket by: tcpi_last_ack_recv counts from the peer's
// FIN, and Recv-Q holds the unread data plus one for the FIN.
func TestDumpTCPInfo(t *testing.T) {
	ns := newTestNetns(t)
	ln := listen(t, ns, "tcp4", "127.0.0.1:0")
	d, err := NewDumperNetNS(ns.fd)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := connect(t, ns, ln, 1)[0]
	if _, err := p.client.Write(make([]byte, 700)); err != nil {
		t.Fatal(err)
	}
	p.client.Close()
	closed := time.Now()
	got := waitDump(t, d, Mask(event.CloseWait), 1, ln)
	time.Sleep(300 * time.Millisecond)
	socks, err := d.AppendQuery(nil, Query{States: Mask(event.CloseWait), Info: true})
	if err != nil || len(socks) != 1 {
		t.Fatalf("dump with tcp_info: %d sockets, %v", len(socks), err)
	}
	s := socks[0]
	elapsed := time.Since(closed)
	if s.Local != got[0].Local || s.RQueue != 701 || !s.Info.HasBytesSent() || s.Info.State != uint8(event.CloseWait) {
		t.Errorf("socket %+v: want Recv-Q 701 (700 bytes and the FIN) and a full tcp_info", s)
	}
	if ms := time.Duration(s.Info.LastAckRecvMs) * time.Millisecond; ms < 290*time.Millisecond || ms > elapsed+20*time.Millisecond {
		t.Errorf("last_ack_recv %v, want about the %v since the client's FIN", ms, elapsed)
	}
	rc, err := p.server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ti *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) { ti, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if uint64(ti.Bytes_received) != s.Info.BytesReceived || ti.Segs_in != s.Info.SegsIn || ti.Data_segs_in != s.Info.DataSegsIn ||
		ti.Total_retrans != s.Info.TotalRetrans || ti.Last_data_recv < s.Info.LastDataRecvMs {
		t.Errorf("sock_diag's tcp_info %+v differs from getsockopt's %+v", s.Info, ti)
	}
}
