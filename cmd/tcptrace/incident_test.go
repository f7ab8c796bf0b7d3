package main

// Incident tests: leaks made before tcptrace starts, by helper processes
// whose bug is known (a server that reads to EOF and never closes, one
// that never reads, a client pool that never notices its backend closing,
// one started with a low ulimit -n), checked against `tcptrace
// --snapshot` and a short trace: the diagnosis, the age (the true one is
// known: the test made the leaks), the fds against the limit.

import (
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/report"
	"github.com/tcptrace/tcptrace/internal/testutil/testnet"
)

// Leaker modes of TestLeakerHelper.
const (
	leakEOF    = "eof"    // server: reads each connection to EOF, never closes it
	leakNoRead = "noread" // server: never reads, never closes
	leakPool   = "pool"   // client: connects N times to a target, never reads or closes
	// leakKeepalive is leakEOF with TCP keepalive probes every second.
	leakKeepalive = "eof+keepalive"
)

// TestLeakerHelper is not a test: startLeaker runs the test binary as a
// leaking process (TCPTRACE_TEST_LEAKER names the mode). A server prints
// "ready PORT", a client "ready" once connected; it holds every socket
// until stdin closes.
func TestLeakerHelper(t *testing.T) {
	mode := os.Getenv("TCPTRACE_TEST_LEAKER")
	if mode == "" {
		return // run only as a helper process
	}
	held := make(chan net.Conn, 1024)
	var keep []net.Conn // referenced, so that no finalizer closes them
	go func() {
		for c := range held {
			keep = append(keep, c)
		}
	}()
	switch mode {
	case leakEOF, leakNoRead, leakKeepalive:
		// Go turns keepalive on for accepted connections unless told not
		// to; its probes would restart what tcp_info counts.
		lc := net.ListenConfig{KeepAlive: -1}
		if mode == leakKeepalive {
			lc = net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 100}}
		}
		ln, err := lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					time.Sleep(10 * time.Millisecond) // EMFILE: the leak's end state
					continue
				}
				held <- c
				if mode != leakNoRead {
					go func() { _, _ = io.Copy(io.Discard, c) }()
				}
			}
		}()
		fmt.Printf("ready %d\n", ln.Addr().(*net.TCPAddr).Port)
	case leakPool:
		args := flagArgs()
		n, _ := strconv.Atoi(args[1])
		d := net.Dialer{KeepAlive: -1}
		for range n {
			c, err := d.Dial("tcp4", args[0])
			if err != nil {
				t.Fatal(err)
			}
			held <- c
		}
		fmt.Println("ready")
	default:
		t.Fatalf("unknown leaker mode %q", mode)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// flagArgs are the helper's arguments after "--".
func flagArgs() []string {
	for i, a := range os.Args {
		if a == "--" {
			return os.Args[i+1:]
		}
	}
	return nil
}

// leaker is a running helper.
type leaker struct {
	pid, port int
}

// startLeaker runs a helper in ns, with RLIMIT_NOFILE nofile if not 0 (set
// by the shell's ulimit -n, as an operator would start a service).
func startLeaker(t *testing.T, ns *testnet.NS, mode string, nofile int, args ...string) leaker {
	t.Helper()
	argv := append([]string{os.Args[0], "-test.run=^TestLeakerHelper$", "--"}, args...)
	var cmd *exec.Cmd
	if nofile > 0 {
		// exec keeps the pid: the leaker is the process ip netns exec ran.
		cmd = ns.Command("sh", append([]string{"-c", fmt.Sprintf(`ulimit -n %d && exec "$@"`, nofile), "sh"}, argv...)...)
	} else {
		cmd = ns.Command(argv[0], argv[1:]...)
	}
	cmd.Env = append(os.Environ(), "TCPTRACE_TEST_LEAKER="+mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	l := leaker{pid: cmd.Process.Pid}
	line := strings.TrimSpace(firstLine(t, out, 15*time.Second, "the "+mode+" leaker"))
	rest, ok := strings.CutPrefix(line, "ready")
	if !ok {
		t.Fatalf("leaker said %q", line)
	}
	if rest != "" {
		l.port, _ = strconv.Atoi(strings.TrimSpace(rest))
	}
	return l
}

// leak makes n connections to port in ns, sends payload on each (if any)
// and closes it: the server's end goes to CLOSE_WAIT.
func leak(t *testing.T, ns *testnet.NS, port, n int, payload []byte) time.Time {
	t.Helper()
	ns.Do(t, func() error {
		for range n {
			c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				return err
			}
			if len(payload) > 0 {
				if _, err := c.Write(payload); err != nil {
					return err
				}
			}
			c.Close()
		}
		return nil
	})
	return time.Now()
}

// waitCloseWait waits until pid holds want CLOSE_WAIT sockets (accepted,
// so that they have an owner), as ss sees them.
func waitCloseWait(t *testing.T, ns *testnet.NS, pid, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got int
	for time.Now().Before(deadline) {
		out, err := ns.Command("ss", "-Htnp", "state", "close-wait").Output()
		if err != nil {
			t.Fatalf("ss: %v", err)
		}
		got = strings.Count(string(out), "pid="+strconv.Itoa(pid)+",")
		if got >= want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pid %d holds %d CLOSE_WAIT sockets, want %d", pid, got, want)
}

// snapshot runs `tcptrace --snapshot -o json` in ns and decodes it.
func snapshot(t *testing.T, ns *testnet.NS, args ...string) (*report.Report, ran) {
	t.Helper()
	r := runTcptrace(t, ns, append([]string{"--snapshot", "-o", "json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("tcptrace --snapshot: exit %d\n%s", r.code, r.stderr)
	}
	return parseReport(t, r.stdout), r
}

func leakOwnerOf(t *testing.T, r *report.Report, pid int) report.LeakOwner {
	t.Helper()
	for _, p := range r.CloseWait.ByProcess {
		if p.PID == pid {
			return p
		}
	}
	t.Fatalf("pid %d is not among the leakers: %+v", pid, r.CloseWait.ByProcess)
	return report.LeakOwner{}
}

func leaksOf(r *report.Report, pid int) []report.Leak {
	var out []report.Leak
	for _, l := range r.CloseWait.Leaked {
		if l.PID == pid {
			out = append(out, l)
		}
	}
	return out
}

// TestSnapshotDiagnoses: three processes leak CLOSE_WAIT in the three
// ways the report tells apart; one snapshot names each with its kind.
func TestSnapshotDiagnoses(t *testing.T) {
	ns := testnet.New(t)
	eof := startLeaker(t, ns, leakEOF, 0)
	noread := startLeaker(t, ns, leakNoRead, 0)

	// A backend that closes each connection after a moment of idleness,
	// as a server with an idle timeout does; the pool never notices.
	var backend *net.TCPListener
	ns.Do(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		backend, _ = ln.(*net.TCPListener)
		return err
	})
	t.Cleanup(func() { backend.Close() })
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			time.AfterFunc(300*time.Millisecond, func() { c.Close() })
		}
	}()
	pool := startLeaker(t, ns, leakPool, 0, backend.Addr().String(), "3")

	const n = 3
	payload := []byte(strings.Repeat("x", 1000))
	leak(t, ns, eof.port, n, []byte("GET / HTTP/1.0\r\n\r\n"))
	leak(t, ns, noread.port, n, payload)
	for _, l := range []leaker{eof, noread, pool} {
		waitCloseWait(t, ns, l.pid, n)
	}
	time.Sleep(1100 * time.Millisecond) // past the 1 s threshold

	r, _ := snapshot(t, ns, "--close-wait-threshold", "1s")
	if r.Mode != "snapshot" || r.Events != 0 || r.Census.Total == 0 {
		t.Errorf("mode %q events %d census %+v", r.Mode, r.Events, r.Census)
	}
	for _, c := range []struct {
		who       leaker
		diagnosis string
		role      string
		recvQ     uint32
		lport     int
		backend   string
	}{
		// Read to EOF: the FIN consumed, Recv-Q 0.
		{eof, report.DiagNotClosed, "server", 0, eof.port, ""},
		// Never read: the 1000 bytes and the FIN, which counts as one.
		{noread, report.DiagUnread, "server", uint32(len(payload)) + 1, noread.port, ""},
		// The pool's connections: nothing sent, the FIN unread.
		{pool, report.DiagClientPool, "client", 1, 0, backend.Addr().String()},
	} {
		p := leakOwnerOf(t, r, c.who.pid)
		if p.Diagnosis != c.diagnosis || p.Count != n || len(p.Groups) != 1 || p.AgeSource != report.AgeTCPInfo {
			t.Errorf("pid %d: %+v; want %s, %d sockets, one group, ages from tcp_info", c.who.pid, p, c.diagnosis, n)
			continue
		}
		g := p.Groups[0]
		if g.Role != c.role || g.Lport != c.lport || g.Backend != c.backend || g.Count != n {
			t.Errorf("pid %d group %+v; want role %s lport %d backend %q", c.who.pid, g, c.role, c.lport, c.backend)
		}
		if p.FDs < n || p.FDLimit <= 0 {
			t.Errorf("pid %d: %d fds of %d; want at least %d and a limit", c.who.pid, p.FDs, p.FDLimit, n)
		}
		for _, l := range leaksOf(r, c.who.pid) {
			if l.Diagnosis != c.diagnosis || l.Role != c.role || l.RecvQ != c.recvQ || l.FD < 3 ||
				l.AgeSource != report.AgeTCPInfo || !l.Preexisting || l.AgeS < 1 || l.AgeS > 20 {
				t.Errorf("pid %d leak %+v: want %s, role %s, recv_q %d, an fd, a tcp_info age", c.who.pid, l, c.diagnosis, c.role, c.recvQ)
			}
		}
	}
	if g := leakOwnerOf(t, r, noread.pid).Groups[0]; g.UnreadBytes != n*uint64(len(payload)) || g.Unread != n {
		t.Errorf("no-read group %+v: want %d sockets with %d bytes unread", g, n, n*len(payload))
	}
	if g := leakOwnerOf(t, r, pool.pid).Groups[0]; g.IdleBeforeCloseS == nil || *g.IdleBeforeCloseS < 0.2 || *g.IdleBeforeCloseS > 2 {
		t.Errorf("pool group %+v: want about 0.3 s idle before the backend's FIN", g)
	}
	ids := map[string]int{}
	for _, a := range r.Recommendations {
		ids[a.ID]++
		if a.ID == "close-wait-leak" {
			d, _ := a.Evidence["diagnosis"].(string)
			ids[d]++
		}
	}
	if ids["close-wait-leak"] != 3 || ids["unread"] != 1 || ids["not_closed"] != 1 || ids["client_pool"] != 1 {
		t.Errorf("advice %v, want one close-wait-leak per kind", ids)
	}
	if !slicesContainID(r.BlindSpots, "needs-trace") {
		t.Errorf("blind spots %+v lack needs-trace", r.BlindSpots)
	}

	// The text report says the same.
	txt := runTcptrace(t, ns, "--snapshot", "--close-wait-threshold", "1s")
	for _, want := range []string{"tcptrace snapshot:", "Sockets now, by state", "unread", "not_closed", "client_pool",
		"backend " + backend.Addr().String(), "never read to the end", "connect()ed to " + backend.Addr().String()} {
		if !strings.Contains(unwrapped(txt.stdout), want) {
			t.Errorf("text snapshot lacks %q:\n%s", want, txt.stdout)
		}
	}
}

// unwrapped is a text report with its lines joined by single spaces: where
// a sentence wraps depends on the lengths of pids and command lines.
func unwrapped(text string) string { return strings.Join(strings.Fields(text), " ") }

func slicesContainID(bs []report.BlindSpot, id string) bool {
	for _, b := range bs {
		if b.ID == id {
			return true
		}
	}
	return false
}

// TestAgeBeforeTracing: leaks made 10, 6 and 2 seconds before tcptrace
// starts are reported with those ages, from tcp_info, by a snapshot and by
// a trace (which also measures the growth while it runs).
func TestAgeBeforeTracing(t *testing.T) {
	ns := testnet.New(t)
	l := startLeaker(t, ns, leakEOF, 0)
	var closed []time.Time
	for i, wait := range []time.Duration{0, 4 * time.Second, 4 * time.Second} {
		time.Sleep(wait)
		closed = append(closed, leak(t, ns, l.port, 2, []byte("x")))
		waitCloseWait(t, ns, l.pid, 2*(i+1))
	}
	time.Sleep(time.Until(closed[0].Add(10 * time.Second)))

	r, _ := snapshot(t, ns, "--close-wait-threshold", "1s")
	leaks := leaksOf(r, l.pid)
	if len(leaks) != 6 {
		t.Fatalf("snapshot: %d leaks of pid %d, want 6: %+v", len(leaks), l.pid, r.CloseWait.Leaked)
	}
	// Oldest first: two of each batch, about 10, 6 and 2 s old.
	for i, lk := range leaks {
		batch := closed[i/2]
		want := r.Census.TakenAt.Sub(batch).Seconds()
		if lk.AgeSource != report.AgeTCPInfo || math.Abs(lk.AgeS-want) > 2 || lk.Since.Sub(batch).Abs() > 2*time.Second {
			t.Errorf("snapshot: leak %d: age %.3f s (%s) since %v; want %.1f s (within 2 s), since %v",
				i, lk.AgeS, lk.AgeSource, lk.Since, want, batch)
		}
	}
	// The oldest is as old as the time from its close to the census:
	// about 10 s, more when a loaded machine starts the snapshot late.
	span := r.Census.TakenAt.Sub(closed[0]).Seconds()
	if a := leaks[0].AgeS; math.Abs(a-span) > 2 {
		t.Errorf("snapshot: the oldest leak is %.1f s old, want about %.1f s", a, span)
	}
	// 6 sockets over the span since the oldest: 36 a minute over 10 s.
	wantGrowth := 6 / (span / 60)
	if p := leakOwnerOf(t, r, l.pid); p.GrowthSource != report.AgeTCPInfo ||
		p.GrowthPerMin < wantGrowth*0.83 || p.GrowthPerMin > wantGrowth*1.25 {
		t.Errorf("snapshot growth %.2f/min (%s), want about %.1f from the ages (6 in %.1f s)",
			p.GrowthPerMin, p.GrowthSource, wantGrowth, span)
	}

	// A trace started now sees the same sockets as there before it, and
	// new ones it sees entering CLOSE_WAIT: 4 in 4 s of a 6 s trace.
	tt := startTcptrace(t, ns, "-q", "-o", "json", "-d", "6s", "--close-wait-threshold", "1s")
	for range 4 {
		leak(t, ns, l.port, 1, []byte("x"))
		time.Sleep(time.Second)
	}
	waitCloseWait(t, ns, l.pid, 10)
	done := make(chan error, 1)
	go func() { done <- tt.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tcptrace: %v\n%s", err, tt.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tcptrace -d 6s did not end")
	}
	tr := parseReport(t, tt.stdout.String())
	// By when they entered CLOSE_WAIT, not by how tcptrace knows: a
	// transition the kernel never delivered (README, "What it cannot
	// see") leaves a socket made while tracing to tcp_info as well.
	var pre []report.Leak
	traced := 0
	for _, lk := range leaksOf(tr, l.pid) {
		switch {
		case lk.Since.Before(tr.Started):
			pre = append(pre, lk)
		case lk.AgeSource != report.AgeTraced && lk.AgeSource != report.AgeTCPInfo:
			t.Errorf("a leak made while tracing: %+v, want age_source traced (or tcp_info)", lk)
		default:
			traced++
		}
	}
	end := tr.Started.Add(time.Duration(tr.DurationS * float64(time.Second)))
	for i, lk := range pre {
		batch := closed[i/2]
		if lk.AgeSource != report.AgeTCPInfo || lk.Since.Sub(batch).Abs() > 2*time.Second || math.Abs(lk.AgeS-end.Sub(batch).Seconds()) > 2 {
			t.Errorf("trace: preexisting leak %d: %.3f s old (%s) since %v; want %.1f s old, since %v, within 2 s",
				i, lk.AgeS, lk.AgeSource, lk.Since, end.Sub(batch).Seconds(), batch)
		}
	}
	// Four were made while tracing: on a loaded machine the last may come
	// after the end, and then the trace did not see it at all.
	p := leakOwnerOf(t, tr, l.pid)
	want := float64(traced) / (tr.DurationS / 60)
	if len(pre) != 6 || traced < 3 || p.GrowthSource != report.AgeTraced || math.Abs(p.GrowthPerMin-want) > 0.05 {
		t.Errorf("trace: %d preexisting, %d traced, growth %.2f/min (%s); want 6, 3 or 4, and %.2f/min (%d in %.1f s)",
			len(pre), traced, p.GrowthPerMin, p.GrowthSource, want, traced, tr.DurationS)
	}
}

// TestAgeWithKeepalive: a leaker with TCP keepalive on (probes after 1 s
// idle): the peer's orphan answers each probe, which restarts what
// tcp_info counts, so the report gives the age as a lower bound.
func TestAgeWithKeepalive(t *testing.T) {
	ns := testnet.New(t)
	l := startLeaker(t, ns, leakKeepalive, 0)
	closed := leak(t, ns, l.port, 2, []byte("x"))
	waitCloseWait(t, ns, l.pid, 2)
	time.Sleep(time.Until(closed.Add(4 * time.Second)))
	r, _ := snapshot(t, ns, "--close-wait-threshold", "0s")
	for _, lk := range leaksOf(r, l.pid) {
		if lk.AgeSource != report.AgeTCPInfo || !lk.AgeLowerBound || lk.AgeS > 2.5 {
			t.Errorf("leak %+v: want a tcp_info age under 2.5 s (a probe answered within the last ~1 s), marked a lower bound", lk)
		}
	}
	if p := leakOwnerOf(t, r, l.pid); !p.AgeLowerBound || p.GrowthSource != "" {
		t.Errorf("owner %+v: want the lower bound flagged, and no growth from ages that are bounds", p)
	}
}

// TestLowFDLimit: a leaker started with ulimit -n 64 that has leaked most
// of it: the report counts its fds against the limit, says how long it has
// left at the rate it leaks, and warns of EMFILE.
func TestLowFDLimit(t *testing.T) {
	ns := testnet.New(t)
	const limit = 64
	l := startLeaker(t, ns, leakEOF, limit)
	// A Go process holds a few fds of its own (stdio, the listener, epoll
	// and its eventfd): leak until 5 are left (above 90% of the limit),
	// over about 7 s.
	n := limit - 5 - countFDs(t, l.pid)
	for i := range n {
		leak(t, ns, l.port, 1, nil)
		if i%5 == 4 {
			time.Sleep(600 * time.Millisecond)
		}
	}
	waitCloseWait(t, ns, l.pid, n)
	fds := countFDs(t, l.pid)
	r, _ := snapshot(t, ns, "--close-wait-threshold", "0s")
	p := leakOwnerOf(t, r, l.pid)
	if p.FDLimit != limit || p.FDs != fds || p.Count != n {
		t.Fatalf("fds %d of %d, %d leaks; want %d of %d, %d", p.FDs, p.FDLimit, p.Count, fds, limit, n)
	}
	// Every socket is within the window the snapshot looks back over (the
	// oldest's age): the rate is all of them over that time.
	if want := float64(p.Count) / p.OldestS * 60; p.GrowthSource != report.AgeTCPInfo || math.Abs(p.GrowthPerMin-want) > 1 ||
		p.TimeToFDLimitS == nil {
		t.Errorf("growth %.2f/min (%s), time to limit %v; want %.2f/min from the ages, and a time", p.GrowthPerMin,
			p.GrowthSource, p.TimeToFDLimitS, want)
	} else if want := float64(limit-p.FDs) / p.GrowthPerMin * 60; math.Abs(*p.TimeToFDLimitS-want) > 1 {
		t.Errorf("time to the fd limit %.1f s, want %.1f s", *p.TimeToFDLimitS, want)
	}
	var reason string
	for _, a := range r.Recommendations {
		if a.ID == "close-wait-leak" && a.Evidence["pid"] == float64(l.pid) {
			reason = a.Reason
			if a.Evidence["fd_limit"] != float64(limit) || a.Evidence["fds"] != float64(fds) {
				t.Errorf("evidence %v", a.Evidence)
			}
		}
	}
	if want := fmt.Sprintf("holds %d of %d allowed file descriptors", fds, limit); !strings.Contains(reason, want) ||
		!strings.Contains(reason, "accept() will fail with EMFILE soon") || !strings.Contains(reason, "reaches the limit in about") {
		t.Errorf("advice lacks %q, EMFILE or the time left:\n%s", want, reason)
	}
	txt := runTcptrace(t, ns, "--snapshot", "--close-wait-threshold", "0s")
	if want := fmt.Sprintf("%d of %d fds", fds, limit); !strings.Contains(unwrapped(txt.stdout), want) {
		t.Errorf("text summary lacks %q:\n%s", want, txt.stdout)
	}
}

// countFDs counts a process's open fds.
func countFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestSnapshotUnprivileged: run as an ordinary user, --snapshot works (no
// BPF, sock_diag of its own namespace) and says that it could not name
// root's processes, and why.
func TestSnapshotUnprivileged(t *testing.T) {
	ns := testnet.New(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is needed: run scripts/setup.sh")
	}
	l := startLeaker(t, ns, leakEOF, 0)
	leak(t, ns, l.port, 3, []byte("x"))
	waitCloseWait(t, ns, l.pid, 3)
	// The binary must be reachable by nobody: a directory of its own in
	// /tmp (t.TempDir's parent is private).
	dir, err := os.MkdirTemp("", "tcptrace-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := dir + "/tcptrace"
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		bin, "--snapshot", "-o", "json", "--close-wait-threshold", "0s")
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	res := waitRan(t, cmd, &out, &errOut)
	if res.code != 0 {
		t.Fatalf("unprivileged --snapshot: exit %d: %s", res.code, res.stderr)
	}
	r := parseReport(t, res.stdout)
	var spot *report.BlindSpot
	for i := range r.BlindSpots {
		if r.BlindSpots[i].ID == "owners-unreadable" {
			spot = &r.BlindSpots[i]
		}
	}
	if spot == nil || spot.Count != 3 || !strings.Contains(spot.Reason, "CAP_SYS_PTRACE") {
		t.Fatalf("blind spots %+v: want owners-unreadable for 3 sockets, saying CAP_SYS_PTRACE", r.BlindSpots)
	}
	// What needs no privilege is all there: the sockets, their ages and kinds.
	p := leakOwnerOf(t, r, 0)
	if p.Count != 3 || p.Diagnosis != report.DiagNotClosed || p.AgeSource != report.AgeTCPInfo {
		t.Errorf("unattributed leak %+v", p)
	}
}
