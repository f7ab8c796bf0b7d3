package metrics

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/testutil/eventtest"
	"github.com/tcptrace/tcptrace/internal/testutil/promtest"
	"github.com/tcptrace/tcptrace/internal/report"
)

const (
	ms  = eventtest.Ms
	sec = 1000 * ms
	t0  = 100 * sec
)

func sock(state event.State, local, remote string, inode uint64) census.Socket {
	return census.Socket{Family: event.IPv4, State: state, Inode: inode,
		Local: netipAP(local), Remote: netipAP(remote)}
}

// trace feeds an engine 20 connections the client closes first, 40
// seconds of ticks, and a CLOSE_WAIT socket held by "leaky".
func trace(t *testing.T, allNetNS bool) *engine.Snapshot {
	t.Helper()
	e := engine.New(engine.Config{})
	st := &engine.Start{Version: "test", Kernel: "6.18.0", HZ: 250, StartNs: t0,
		Started: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), Interval: time.Second,
		OwnNetNS: eventtest.NetNS, Scope: report.Scope{NetNS: eventtest.NetNS, AllNetNS: allNetNS},
		Threshold: 30 * time.Second, MaxSockets: 10000,
		Sysctl: map[string]string{"net.ipv4.tcp_tw_reuse": "0", "net.ipv4.ip_local_port_range": "60000 60999", "net.ipv4.tcp_timestamps": "1"}}
	e.Start(st)
	if allNetNS {
		e.Namespace(&engine.Namespace{TakenNs: t0, NetNS: eventtest.NetNS, Sysctl: st.Sysctl,
			Identity: report.NetNSIdentity{PodUID: "pod-1", Runtime: "containerd", PID: 7, Comm: "pause"}})
	}
	all := census.Mask(event.Listen, event.TimeWait, event.FinWait2, event.CloseWait)
	leak := sock(event.CloseWait, "10.0.0.2:80", "10.0.0.7:5555", 77)
	e.Census(&engine.Census{TakenNs: t0, NetNS: eventtest.NetNS, States: all, Sockets: []census.Socket{leak}})
	var s eventtest.Seq
	for i := range uint64(20) {
		s.Connection(t0+i*100*ms, i, 50000+int(i), false)
	}
	for i := range s.Evs {
		e.Event(&s.Evs[i])
	}
	for i := uint64(1); i <= 40; i++ {
		now := t0 + i*sec
		c := &engine.Census{TakenNs: now, NetNS: eventtest.NetNS, States: census.Mask(event.CloseWait, event.FinWait2),
			Sockets: []census.Socket{leak}}
		if i == 35 {
			c.Owners = map[uint64]report.Owner{77: {PID: 4242, Comm: "leaky"}}
		}
		e.Census(c)
		e.Flush(now)
		e.Tick(&engine.Tick{NowNs: now, Loss: report.Loss{Written: 220, Read: 220}})
	}
	return e.Snapshot()
}

// scrape gathers x's metrics as name{label="v",...} -> value (histograms
// as their _count and _sum).
func scrape(t *testing.T, x *Exporter) (map[string]float64, []byte) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(x)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				if l.GetValue() != "" {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
			}
			sort.Strings(ls)
			k := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.Gauge != nil:
				out[k] = m.Gauge.GetValue()
			case m.Counter != nil:
				out[k] = m.Counter.GetValue()
			case m.Histogram != nil:
				out[mf.GetName()+"_count{"+strings.Join(ls, ",")+"}"] = float64(m.Histogram.GetSampleCount())
				out[mf.GetName()+"_sum{"+strings.Join(ls, ",")+"}"] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out, text.Bytes()
}

func TestMetricsAgreeWithTheReport(t *testing.T) {
	snap := trace(t, false)
	x := New(Config{Version: "test"})
	x.Interval(snap)
	m, _ := scrape(t, x)
	r := snap.Report
	want := map[string]float64{
		`tcptrace_build_info{goversion="` + goVersion() + `",version="test"}`: 1,
		`tcptrace_events_total{}`:                                                                   float64(r.Events),
		`tcptrace_events_dropped_total{}`:                                                           0,
		`tcptrace_time_wait_created_total{netns="1",role="client"}`:                                 20,
		`tcptrace_time_wait_created_total{netns="1",role="server"}`:                                 0,
		`tcptrace_sockets{netns="1",state="TIME_WAIT"}`:                                             float64(r.TimeWait.Current),
		`tcptrace_sockets{netns="1",state="CLOSE_WAIT"}`:                                            1,
		`tcptrace_close_wait_leaked_sockets{comm="leaky",netns="1",pid="4242"}`:                     1,
		`tcptrace_close_wait_leaked_oldest_seconds{comm="leaky",netns="1",pid="4242"}`:              r.CloseWait.ByProcess[0].OldestS,
		`tcptrace_close_wait_leaked_sockets{comm="other"}`:                                          0,
		`tcptrace_time_wait_destination_sockets{addr="10.0.0.2",netns="1",port="80",role="client"}`: 20,
		`tcptrace_time_wait_destination_sockets{addr="other"}`:                                      0,
		`tcptrace_transitions_total{new_state="FIN_WAIT1",old_state="ESTABLISHED"}`:                 20,
		`tcptrace_state_duration_seconds_count{state="ESTABLISHED"}`:                                float64(r.States["ESTABLISHED"].Count),
		`tcptrace_local_ports{netns="1"}`:                                                           1000,
		`tcptrace_census_ok{netns="1"}`:                                                             1,
		`tcptrace_advice_info{id="close-wait-leak",netns="1",severity="warning"}`:                   1,
		`tcptrace_netns_info{netns="1",own="true"}`:                                                 1,
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Errorf("no %s", k)
			continue
		}
		if got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if t.Failed() {
		for k := range m {
			t.Log(k)
		}
	}
}

func TestMetricsPerNamespace(t *testing.T) {
	snap := trace(t, true)
	x := New(Config{Version: "test"})
	x.Interval(snap)
	m, _ := scrape(t, x)
	for _, k := range []string{
		`tcptrace_netns_info{netns="1",own="true",pod_uid="pod-1",runtime="containerd"}`,
		`tcptrace_close_wait_leaked_sockets{comm="leaky",netns="1",pid="4242",pod_uid="pod-1"}`,
		`tcptrace_time_wait_created_total{netns="1",role="client"}`,
	} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %s", k)
		}
	}
}

func TestLintAndPromtool(t *testing.T) {
	x := New(Config{Version: "test"})
	x.Interval(trace(t, true))
	problems, err := testutil.CollectAndLint(x)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	_, text := scrape(t, x)
	promtest.Check(t, text, "check", "metrics")
}

func TestCardinalityBounded(t *testing.T) {
	snap := trace(t, false)
	// 50 processes leaking, 100 destinations: the top 10 each, the rest
	// in "other".
	r := *snap.Report
	r.CloseWait.ByProcess = nil
	for i := range 50 {
		r.CloseWait.ByProcess = append(r.CloseWait.ByProcess, report.LeakOwner{PID: 1000 + i, Comm: "p", Count: 50 - i, OldestS: 40})
	}
	s := *snap
	s.Report = &r
	s.Destinations = nil
	for i := range 100 {
		d := snap.Destinations[0]
		d.Port = uint16(1000 + i)
		d.Now = int64(i + 1)
		s.Destinations = append(s.Destinations, d)
	}
	x := New(Config{})
	x.Interval(&s)
	m, _ := scrape(t, x)
	leaks, dests := 0, 0
	var otherLeaks, otherDests float64
	for k, v := range m {
		switch {
		case strings.HasPrefix(k, "tcptrace_close_wait_leaked_sockets{"):
			leaks++
			if strings.Contains(k, `comm="other"`) {
				otherLeaks = v
			}
		case strings.HasPrefix(k, "tcptrace_time_wait_destination_sockets{"):
			dests++
			if strings.Contains(k, `addr="other"`) {
				otherDests = v
			}
		}
	}
	if leaks != 11 || dests != 11 {
		t.Errorf("%d leak series and %d destination series, want 11 each (top 10 + other)", leaks, dests)
	}
	// The rest add up: processes 11-50 hold 40+39+...+1 sockets; the
	// destinations below the top 10 hold 1+...+90.
	if otherLeaks != 820 || otherDests != 4095 {
		t.Errorf("other: %v leaked sockets, %v TIME_WAIT; want 820 and 4095", otherLeaks, otherDests)
	}
	// A process's name is outside input: still a valid label.
	r.CloseWait.ByProcess[0].Comm = "bad\xff\x1b[0m"
	if _, text := scrape(t, x); !bytes.Contains(text, []byte(`comm="bad??[0m"`)) {
		t.Errorf("comm not made a valid label:\n%s", text)
	}
}

func TestListenAddr(t *testing.T) {
	for in, want := range map[string]string{
		":9877": "127.0.0.1:9877", "9877": "127.0.0.1:9877", "0.0.0.0:9877": "0.0.0.0:9877",
		"[::]:9877": "[::]:9877", "localhost:1": "localhost:1",
	} {
		if got, err := ListenAddr(in); err != nil || got != want {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "host", "1.2.3.4:", "a:b:c"} {
		if got, err := ListenAddr(bad); err == nil {
			t.Errorf("ListenAddr(%q) = %q, want an error", bad, got)
		}
	}
}

func TestServeAndBusyPort(t *testing.T) {
	ln, err := Listen(":0")
	if err != nil {
		t.Fatal(err)
	}
	if a := ln.Addr().(*net.TCPAddr); !a.IP.IsLoopback() {
		t.Errorf("a bare :PORT bound %v, want loopback", a)
	}
	x := New(Config{Version: "test"})
	x.Interval(trace(t, false))
	srv := Serve(ln, Registry(x))
	if _, err := Listen(ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second listener on %s: %v, want a port-in-use error", ln.Addr(), err)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"tcptrace_events_total", "go_goroutines", "process_resident_memory_bytes"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	promtest.Check(t, body, "check", "metrics")
	if err := srv.Close(); err != nil {
		t.Error(err)
	}
}

func netipAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func goVersion() string { return runtime.Version() }

func TestGoneNamespaceHasNoSeries(t *testing.T) {
	snap := trace(t, true)
	r := *snap.Report
	r.Namespaces = append([]report.Namespace(nil), r.Namespaces...)
	gone := r.Namespaces[0]
	gone.NetNS, gone.Own, gone.Gone = 99, false, true
	r.Namespaces = append(r.Namespaces, gone)
	s := *snap
	s.Report = &r
	x := New(Config{})
	x.Interval(&s)
	m, _ := scrape(t, x)
	for k := range m {
		if strings.Contains(k, `netns="99"`) {
			t.Errorf("gone namespace still served: %s", k)
		}
	}
}

// Records in flight (written, not read yet) are no loss while tracing:
// the dropped counter must not go down when they are read.
func TestDroppedNeverGoesDown(t *testing.T) {
	snap := trace(t, false)
	x := New(Config{})
	var last float64
	for i, l := range []report.Loss{{RingFull: 5, Written: 100, Read: 90}, {RingFull: 5, Written: 120, Read: 120}, {RingFull: 7, Written: 130, Read: 125}} {
		r := *snap.Report
		r.Loss = l
		r.Dropped = report.DroppedRecords(l, 0)
		s := *snap
		s.Report, s.Final = &r, false
		x.Interval(&s)
		m, _ := scrape(t, x)
		got := m["tcptrace_events_dropped_total{}"]
		if got < last || got != float64(l.RingFull) {
			t.Errorf("step %d: dropped %v after %v, want %d (ring full only)", i, got, last, l.RingFull)
		}
		last = got
	}
}
