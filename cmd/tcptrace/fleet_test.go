package main

// Fleet tests: --metrics scraped while a scenario runs, and --all-netns
// telling apart the leaks of two namespaces.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/testutil/promtest"
	"github.com/tcptrace/tcptrace/internal/report"
	"github.com/tcptrace/tcptrace/internal/testutil/testnet"
)

// scrape fetches /metrics from addr inside ns. The request is written by
// hand on one connection: ns.Do runs fn on a thread inside ns, and
// net/http would dial from another goroutine (another thread, outside).
func scrape(t *testing.T, ns *testnet.NS, addr string) string {
	t.Helper()
	var body string
	ns.Do(t, func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: tcptrace\r\n\r\n"); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		head, rest, ok := bytes.Cut(b, []byte("\r\n\r\n"))
		if !ok || !bytes.HasPrefix(head, []byte("HTTP/1.0 200")) && !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
			return fmt.Errorf("GET /metrics: %q", head)
		}
		body = string(rest)
		return nil
	})
	return body
}

var sampleRe = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$`)

// series parses an exposition into name{labels} -> value, the labels as
// printed (sorted by name, as client_golang writes them).
func series(text string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := sampleRe.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err == nil {
			out[m[1]+m[2]] = v
		}
	}
	return out
}

// find returns the value of the one series of name whose labels include
// every pair in want (label="value"), and how many matched.
func find(s map[string]float64, name string, want ...string) (float64, int) {
	var v float64
	n := 0
	for k, x := range s {
		if !strings.HasPrefix(k, name+"{") && k != name {
			continue
		}
		ok := true
		for _, w := range want {
			if !strings.Contains(k, w) {
				ok = false
			}
		}
		if ok {
			v, n = x, n+1
		}
	}
	return v, n
}

// waitMetric scrapes until cond holds (bounded), and returns that scrape.
func waitMetric(t *testing.T, ns *testnet.NS, addr, what string, cond func(map[string]float64) bool) (map[string]float64, string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		text := scrape(t, ns, addr)
		s := series(text)
		if cond(s) {
			return s, text
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed %s; last scrape:\n%s", what, text)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestScenarioMetrics: a client runs out of local ports, a server leaks
// CLOSE_WAIT; /metrics, scraped while tcptrace runs, shows what the
// scenario did, and the same numbers as the report at the end.
func TestScenarioMetrics(t *testing.T) {
	ns := testnet.New(t)
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "40000 40049")
	ns.Sysctl(t, "net.ipv4.tcp_tw_reuse", "0")
	const addr = "127.0.0.1:9877" // the namespace's own loopback: no clash
	tt := startTcptrace(t, ns, "-q", "-o", "json", "-i", "200ms", "--close-wait-threshold", "1s", "--metrics", ":9877")
	netns := fmt.Sprintf(`netns="%d"`, ns.Inode())

	pid, port := startLeakServer(t, ns)
	closeFirst(t, ns, port, 3)
	waitHeld(t, ns, pid, port, 3)

	var out, errOut strings.Builder
	churn := ns.Command(tcpchurnBinary(t), "-n", "200", "-c", "1", "--close", "client", "--keep-going", "-o", "json")
	churn.Stdout, churn.Stderr = &out, &errOut
	if err := churn.Run(); err != nil {
		t.Fatalf("tcpchurn: %v: %s", err, errOut.String())
	}
	c := findChurnJSON(t, out.String())
	failed := float64(c.ConnectCalls - c.Connections)
	host, p, _ := net.SplitHostPort(c.Server)

	// The counters catch up within an interval of the kernel's work; the
	// leak's owner is named at the next owner scan (every 5 s). The
	// scrapes' own client sockets pass through CLOSE_WAIT (tcptrace's
	// server closes first), so a census may catch one: wait for a snapshot
	// whose census came between two scrapes.
	s, text := waitMetric(t, ns, addr, "the churn and the named leak", func(s map[string]float64) bool {
		created, _ := find(s, "tcptrace_time_wait_created_total", netns, `role="client"`)
		fails, _ := find(s, "tcptrace_connect_eaddrnotavail_total", netns)
		leaked, _ := find(s, "tcptrace_close_wait_leaked_sockets", netns, fmt.Sprintf(`pid="%d"`, pid))
		closeWait, _ := find(s, "tcptrace_sockets", netns, `state="CLOSE_WAIT"`)
		return created >= float64(c.Connections) && fails >= failed && leaked == 3 && closeWait == 3
	})
	promtest.Check(t, []byte(text), "check", "metrics")
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		// Every completed connection left one client-side TIME_WAIT (the
		// scrapes leave server-side ones: tcptrace closes them first).
		{"tcptrace_time_wait_created_total", []string{netns, `role="client"`}, float64(c.Connections)},
		{"tcptrace_connect_eaddrnotavail_total", []string{netns}, failed},
		{"tcptrace_time_wait_destination_sockets", []string{netns, `role="client"`, `addr="` + host + `"`, `port="` + p + `"`}, float64(c.Connections)},
		{"tcptrace_local_ports", []string{netns}, 50},
		{"tcptrace_sockets", []string{netns, `state="CLOSE_WAIT"`}, 3},
		{"tcptrace_close_wait_leaked_sockets", []string{netns, fmt.Sprintf(`pid="%d"`, pid), `comm="tcpchurn"`}, 3},
		{"tcptrace_transitions_total", []string{`old_state="SYN_SENT"`, `new_state="CLOSE"`}, failed},
		{"tcptrace_advice_info", []string{netns, `id="tw-reuse"`, `current="0"`, `recommended="1"`, `sysctl="net.ipv4.tcp_tw_reuse"`}, 1},
		{"tcptrace_advice_info", []string{netns, `id="close-wait-leak"`}, 1},
		{"tcptrace_events_dropped_total", nil, 0},
	} {
		got, n := find(s, tc.name, tc.labels...)
		if n != 1 || got != tc.want {
			t.Errorf("%s%v = %v (%d series), want %v", tc.name, tc.labels, got, n, tc.want)
		}
	}
	if n, _ := find(s, "tcptrace_state_duration_seconds_count", `state="SYN_SENT"`); n < float64(c.Connections) {
		t.Errorf("SYN_SENT durations counted %v, want at least %d", n, c.Connections)
	}
	if _, n := find(s, "go_goroutines"); n != 1 {
		t.Error("no go_goroutines")
	}

	// The report at the end says the same.
	if code := tt.stop(t); code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, tt.stderr.String())
	}
	r := parseReport(t, tt.stdout.String())
	if r.TimeWait.ByRole.Client != uint64(c.Connections) || float64(r.PortExhaustion.ConnectFailures) != failed ||
		len(r.CloseWait.ByProcess) != 1 || r.CloseWait.ByProcess[0].Count != 3 || r.CloseWait.ByProcess[0].PID != pid {
		t.Errorf("report time_wait %+v, port_exhaustion %d, close_wait %+v: not what /metrics said",
			r.TimeWait.ByRole, r.PortExhaustion.ConnectFailures, r.CloseWait.ByProcess)
	}
	// (Counts the scrapes themselves move, like CLOSE->SYN_SENT, differ by
	// the scrapes after the one checked.)
	if got, _ := find(s, "tcptrace_transitions_total", `old_state="SYN_SENT"`, `new_state="CLOSE"`); got != float64(r.Transitions["SYN_SENT->CLOSE"]) {
		t.Errorf("SYN_SENT->CLOSE: /metrics %v, report %d", got, r.Transitions["SYN_SENT->CLOSE"])
	}
}

// TestScenarioMetricsPortInUse: a port already taken is an error at
// start, exit 1, before tracing.
func TestScenarioMetricsPortInUse(t *testing.T) {
	ns := testnet.New(t)
	var ln net.Listener
	ns.Do(t, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:9877")
		return err
	})
	defer ln.Close()
	res := runTcptrace(t, ns, "-q", "-d", "5s", "--metrics", ":9877")
	if res.code != 1 || !strings.Contains(res.stderr, "127.0.0.1:9877: the port is in use") {
		t.Errorf("exit %d, stderr %q: want 1 and the port in use", res.code, res.stderr)
	}
}

// TestScenarioAllNetNSLeaks: two namespaces, each with a server leaking
// CLOSE_WAIT on the very same 127.0.0.1:7777, a different number each.
// tcptrace --all-netns, run from a third namespace, attributes each leak
// to its own namespace and owner, in the report and in /metrics.
func TestScenarioAllNetNSLeaks(t *testing.T) {
	a, b, own := testnet.New(t), testnet.New(t), testnet.New(t)
	a.Sysctl(t, "net.ipv4.tcp_fin_timeout", "17")
	type leak struct {
		ns  *testnet.NS
		pid int
		n   int
	}
	leaks := []leak{{ns: a, n: 2}, {ns: b, n: 3}}
	for i := range leaks {
		l := &leaks[i]
		cmd := l.ns.Command(tcpchurnBinary(t), "--serve", "127.0.0.1:7777", "--close", "leak")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		firstLine(t, stdout, 10*time.Second, "the leak server to listen")
		l.pid = cmd.Process.Pid
		closeFirst(t, l.ns, 7777, l.n)
		waitHeld(t, l.ns, l.pid, 7777, l.n)
	}
	tt := startTcptrace(t, own, "-q", "-o", "json", "--all-netns", "--close-wait-threshold", "1s", "--metrics", ":9877")
	for _, l := range leaks {
		netns := fmt.Sprintf(`netns="%d"`, l.ns.Inode())
		s, _ := waitMetric(t, own, "127.0.0.1:9877", "the leak of "+l.ns.Name, func(s map[string]float64) bool {
			v, _ := find(s, "tcptrace_close_wait_leaked_sockets", netns, fmt.Sprintf(`pid="%d"`, l.pid))
			return v == float64(l.n)
		})
		if _, n := find(s, "tcptrace_netns_info", netns, `name="`+l.ns.Name+`"`); n != 1 {
			t.Errorf("no tcptrace_netns_info for %s", l.ns.Name)
		}
		if v, _ := find(s, "tcptrace_sockets", netns, `state="CLOSE_WAIT"`); v != float64(l.n) {
			t.Errorf("%s: CLOSE_WAIT sockets %v, want %d", l.ns.Name, v, l.n)
		}
	}
	if code := tt.stop(t); code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, tt.stderr.String())
	}
	r := parseReport(t, tt.stdout.String())
	byNS := map[uint32]report.Namespace{}
	for _, n := range r.Namespaces {
		byNS[n.NetNS] = n
	}
	if n := byNS[own.Inode()]; !n.Own {
		t.Errorf("tcptrace's own namespace %d not marked own: %+v", own.Inode(), n)
	}
	for _, l := range leaks {
		n, ok := byNS[l.ns.Inode()]
		if !ok {
			t.Fatalf("no namespace %d (%s) in the report", l.ns.Inode(), l.ns.Name)
		}
		cw := n.CloseWait
		if n.Name != l.ns.Name || cw.Current != l.n || len(cw.ByProcess) != 1 || cw.ByProcess[0].PID != l.pid ||
			cw.ByProcess[0].Count != l.n || cw.ByProcess[0].Lports[0] != 7777 {
			t.Errorf("%s: name %q close_wait %+v, want %d leaks by pid %d on :7777", l.ns.Name, n.Name, cw, l.n, l.pid)
		}
		found := false
		for _, a := range n.Recommendations {
			found = found || a.ID == "close-wait-leak" && a.NetNS == l.ns.Inode() && a.Evidence["pid"] == float64(l.pid)
		}
		if !found {
			t.Errorf("%s: no close-wait-leak advice naming pid %d: %+v", l.ns.Name, l.pid, n.Recommendations)
		}
		// The host-wide list has each leak once, with its namespace.
		count := 0
		for _, lk := range r.CloseWait.Leaked {
			if lk.NetNS == l.ns.Inode() {
				count++
				if lk.PID != l.pid || lk.Lport != 7777 {
					t.Errorf("leak %+v in %s, want pid %d", lk, l.ns.Name, l.pid)
				}
			}
		}
		if count != l.n {
			t.Errorf("%d host-wide leaks in %s, want %d", count, l.ns.Name, l.n)
		}
	}
	// Each namespace's sysctls are its own.
	if byNS[a.Inode()].Sysctl["net.ipv4.tcp_fin_timeout"] != "17" || byNS[b.Inode()].Sysctl["net.ipv4.tcp_fin_timeout"] == "17" {
		t.Errorf("tcp_fin_timeout: a %q, b %q; want a's own 17", byNS[a.Inode()].Sysctl["net.ipv4.tcp_fin_timeout"],
			byNS[b.Inode()].Sysctl["net.ipv4.tcp_fin_timeout"])
	}
}
