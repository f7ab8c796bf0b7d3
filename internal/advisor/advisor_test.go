package advisor

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tcptrace/tcptrace/internal/report"
)

// quiet is a host where nothing is wrong: a little traffic, default
// settings of Linux 6.18.
func quiet() *report.Report {
	return &report.Report{
		Type: "report", Kernel: "6.18.44", DurationS: 30, Complete: true,
		States: map[string]report.Durations{
			"ESTABLISHED": {Count: 120, P50: 12, P90: 40, P99: 80, Max: 95},
			"TIME_WAIT":   {Count: 100, P50: 60000, P90: 60000, P99: 60001, Max: 60002},
		},
		TimeWait: report.TimeWait{
			Current: 100, Peak: 120, Created: 120, PeakPerS: 8,
			ByRole: report.ByRole{Client: 120},
			Top:    []report.Destination{{Role: "client", Addr: "10.0.0.5", Port: 443, Count: 120, Current: 100, Peak: 120, PeakPerS: 8}},
		},
		CloseWait: report.CloseWait{ThresholdS: 30, Leaked: []report.Leak{}, ByProcess: []report.LeakOwner{}},
		PortExhaustion: report.PortExhaustion{
			ByDestination: []report.DestinationFailures{}, ByProcess: []report.ProcessFailures{},
			PortRange: report.PortRange{Low: 32768, High: 60999, Size: 28232},
		},
		Sysctl: map[string]string{
			"net.ipv4.tcp_fin_timeout":      "60",
			"net.ipv4.tcp_tw_reuse":         "2",
			"net.ipv4.tcp_tw_reuse_delay":   "1000",
			"net.ipv4.tcp_timestamps":       "1",
			"net.ipv4.ip_local_port_range":  "32768 60999",
			"net.ipv4.tcp_max_tw_buckets":   "262144",
			"net.ipv4.tcp_keepalive_time":   "7200",
			"net.ipv4.tcp_keepalive_intvl":  "75",
			"net.ipv4.tcp_keepalive_probes": "9",
		},
		Netstat:         map[string]uint64{"TW": 20, "TWKilled": 0, "TWRecycled": 0, "TCPTimeWaitOverflow": 0},
		Recommendations: []report.Advice{},
	}
}

// clientTo makes this host a client of one destination with the given
// TIME_WAIT peak and creation rate.
func clientTo(r *report.Report, addr string, port int, peak int64, perS uint64) {
	r.TimeWait.Top = append(r.TimeWait.Top, report.Destination{
		Role: "client", Addr: addr, Port: port, Count: peak * 2, Current: peak / 2, Peak: peak, PeakPerS: perS})
	r.TimeWait.Peak = max(r.TimeWait.Peak, peak)
	r.TimeWait.ByRole.Client += uint64(peak * 2)
	slices.SortStableFunc(r.TimeWait.Top, func(a, b report.Destination) int { return int(b.Count - a.Count) })
}

// failTo records connect() failures to a destination.
func failTo(r *report.Report, addr string, port int, n uint64, twPeak int64) {
	r.PortExhaustion.ConnectFailures += n
	r.PortExhaustion.ByDestination = append(r.PortExhaustion.ByDestination,
		report.DestinationFailures{Addr: addr, Port: port, Failures: n, TimeWaitPeak: twPeak})
}

func serverOn(r *report.Report, addr string, port int, peak int64) {
	r.TimeWait.Top = append([]report.Destination{{
		Role: "server", Addr: addr, Port: port, Count: peak * 3, Current: peak / 2, Peak: peak, PeakPerS: uint64(peak / 60)}},
		r.TimeWait.Top...)
	r.TimeWait.Peak = max(r.TimeWait.Peak, peak)
	r.TimeWait.ByRole.Server += uint64(peak * 3)
}

type check func(t *testing.T, adv []report.Advice)

// leaker is a process with one leak group; growth < 0 means unknown.
func leaker(pid int, comm string, g report.LeakGroup, fds, limit int, growth float64, ageSource string) report.LeakOwner {
	p := report.LeakOwner{PID: pid, Comm: comm, Count: g.Count, OldestS: g.OldestS, AgeSource: ageSource,
		Since: time.Date(2026, 11, 23, 20, 4, 0, 0, time.UTC), Diagnosis: g.Diagnosis, Groups: []report.LeakGroup{g},
		FDs: fds, FDLimit: limit}
	if g.Lport != 0 {
		p.Lports = []int{g.Lport}
	}
	if growth >= 0 {
		p.GrowthPerMin, p.GrowthSource = growth, report.AgeTraced
		if ageSource == report.AgeTCPInfo {
			p.GrowthSource = report.AgeTCPInfo
		}
		if fds >= limit {
			v := 0.0
			p.TimeToFDLimitS = &v
		} else if growth > 0 {
			v := float64(limit-fds) / growth * 60
			p.TimeToFDLimitS = &v
		}
	}
	return p
}

// recommends checks the text of an advice's Recommended.
func recommends(id, phrase string) check {
	return func(t *testing.T, adv []report.Advice) {
		t.Helper()
		if a := find(t, adv, id); !strings.Contains(a.Recommended, phrase) {
			t.Errorf("%s recommends %q, want it to contain %q", id, a.Recommended, phrase)
		}
	}
}

// find returns the advice with id, failing the test when absent.
func find(t *testing.T, adv []report.Advice, id string) report.Advice {
	t.Helper()
	for _, a := range adv {
		if a.ID == id {
			return a
		}
	}
	t.Fatalf("no advice %q in %v", id, ids(adv))
	return report.Advice{}
}

func ids(adv []report.Advice) []string {
	out := []string{}
	for _, a := range adv {
		out = append(out, a.ID)
	}
	return out
}

// setTo checks an advice's sysctl change.
func setTo(id, sysctl, current, recommended string) check {
	return func(t *testing.T, adv []report.Advice) {
		t.Helper()
		a := find(t, adv, id)
		if a.Sysctl != sysctl || a.Current != current || a.Recommended != recommended {
			t.Errorf("%s: got %s %q -> %q, want %s %q -> %q", id, a.Sysctl, a.Current, a.Recommended, sysctl, current, recommended)
		}
	}
}

// says checks that an advice's reason contains each phrase.
func says(id string, phrases ...string) check {
	return func(t *testing.T, adv []report.Advice) {
		t.Helper()
		a := find(t, adv, id)
		for _, p := range phrases {
			if !strings.Contains(a.Reason, p) {
				t.Errorf("%s reason lacks %q:\n%s", id, p, a.Reason)
			}
		}
	}
}

// saysNot checks that an advice's reason does not contain a phrase.
func saysNot(id, phrase string) check {
	return func(t *testing.T, adv []report.Advice) {
		t.Helper()
		if a := find(t, adv, id); strings.Contains(a.Reason, phrase) {
			t.Errorf("%s reason contains %q:\n%s", id, phrase, a.Reason)
		}
	}
}

// hasEvidence checks evidence values, compared as JSON would carry them.
func hasEvidence(id string, want map[string]any) check {
	return func(t *testing.T, adv []report.Advice) {
		t.Helper()
		a := find(t, adv, id)
		for k, v := range want {
			got, ok := a.Evidence[k]
			if !ok {
				t.Errorf("%s evidence lacks %s: %v", id, k, a.Evidence)
				continue
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(v)
			if string(gj) != string(wj) {
				t.Errorf("%s evidence %s = %s, want %s", id, k, gj, wj)
			}
		}
	}
}

func TestAdvise(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(r *report.Report)
		want   []string // advice IDs, in order
		checks []check
	}{
		{name: "quiet host", mutate: func(*report.Report) {}, want: []string{}},

		// tw-reuse
		{
			name:   "client TIME_WAIT peak at half the range",
			mutate: func(r *report.Report) { clientTo(r, "10.0.0.5", 443, 15000, 100) },
			want:   []string{IDTwReuse, IDFinTimeoutMyth},
			checks: []check{
				setTo(IDTwReuse, "net.ipv4.tcp_tw_reuse", "2", "1"),
				says(IDTwReuse, "10.0.0.5:443", "15,000", "28,232", "only for loopback", "tcp_tw_reuse_delay = 1000 ms"),
				hasEvidence(IDTwReuse, map[string]any{"destination": "10.0.0.5:443", "time_wait_peak": 15000, "port_range": 28232, "connect_failures": 0}),
			},
		},
		{
			name:   "client rate x 60 s at half the range",
			mutate: func(r *report.Report) { clientTo(r, "10.0.0.5", 443, 5000, 300) },
			want:   []string{IDTwReuse, IDFinTimeoutMyth},
			checks: []check{hasEvidence(IDTwReuse, map[string]any{"needed_ports": 18000, "peak_per_s": 300})},
		},
		{
			name:   "client below half the range",
			mutate: func(r *report.Report) { clientTo(r, "10.0.0.5", 443, 9000, 200) },
			want:   []string{},
		},
		{
			name: "connect failures",
			mutate: func(r *report.Report) {
				clientTo(r, "10.0.0.5", 443, 9000, 200)
				failTo(r, "10.0.0.5", 443, 12, 9000)
			},
			want: []string{IDTwReuse, IDPortRange, IDFinTimeoutMyth},
			checks: []check{
				says(IDTwReuse, "12 connect() calls failed"),
				setTo(IDPortRange, "net.ipv4.ip_local_port_range", "32768 60999", "1024 65535"),
				says(IDPortRange, "ip_local_reserved_ports", "64,512"),
				hasEvidence(IDPortRange, map[string]any{"connect_failures": 12, "destination": "10.0.0.5:443"}),
			},
		},
		{
			name:   "connect failures with no TIME_WAIT seen for the destination",
			mutate: func(r *report.Report) { failTo(r, "10.0.0.7", 8080, 3, 0) },
			want:   []string{IDTwReuse, IDPortRange},
			checks: []check{
				says(IDTwReuse, "ran out of local ports connecting to 10.0.0.7:8080", "3 connect() calls failed"),
				saysNot(IDTwReuse, "up to 0"),
			},
		},
		{
			name:   "rate needs more ports than the range",
			mutate: func(r *report.Report) { clientTo(r, "10.0.0.5", 443, 27000, 600) },
			want:   []string{IDTwReuse, IDPortRange, IDFinTimeoutMyth},
			checks: []check{
				says(IDPortRange, "600/s", "36,000 ports", "28,232"),
				saysNot(IDPortRange, "Even that"),
				hasEvidence(IDPortRange, map[string]any{"needed_ports": 36000, "port_range": 28232}),
			},
		},
		{
			name:   "rate beyond even the widest range",
			mutate: func(r *report.Report) { clientTo(r, "10.0.0.5", 443, 27000, 2000) },
			want:   []string{IDTwReuse, IDPortRange, IDFinTimeoutMyth},
			checks: []check{says(IDPortRange, "Even that is short of 120,000")},
		},
		{
			name: "reuse already 1 and nothing fails",
			mutate: func(r *report.Report) {
				r.Sysctl["net.ipv4.tcp_tw_reuse"] = "1"
				clientTo(r, "10.0.0.5", 443, 5000, 600)
			},
			want: []string{},
		},
		{
			name: "reuse already 1 and connect still fails",
			mutate: func(r *report.Report) {
				r.Sysctl["net.ipv4.tcp_tw_reuse"] = "1"
				clientTo(r, "10.0.0.5", 443, 5000, 600)
				failTo(r, "10.0.0.5", 443, 3, 5000)
			},
			want: []string{IDPortRange, IDFinTimeoutMyth},
		},
		{
			name: "loopback destinations with reuse 2",
			mutate: func(r *report.Report) {
				r.TimeWait.Top = nil
				clientTo(r, "127.0.0.1", 8080, 20000, 500)
				failTo(r, "127.0.0.1", 8080, 40, 20000)
			},
			want: []string{IDPortRange, IDTwReuseOn, IDFinTimeoutMyth},
			checks: []check{
				setTo(IDTwReuseOn, "net.ipv4.tcp_tw_reuse", "2", "2"),
				says(IDTwReuseOn, "loopback", "already reuses", "ip_local_port_range"),
			},
		},
		{
			name: "loopback destinations with reuse off",
			mutate: func(r *report.Report) {
				r.TimeWait.Top = nil
				r.Sysctl["net.ipv4.tcp_tw_reuse"] = "0"
				clientTo(r, "::1", 8080, 20000, 100)
			},
			want:   []string{IDTwReuse, IDFinTimeoutMyth},
			checks: []check{setTo(IDTwReuse, "net.ipv4.tcp_tw_reuse", "0", "1"), says(IDTwReuse, "[::1]:8080", "it is off")},
		},
		{
			name: "loopback and remote destinations with reuse 2",
			mutate: func(r *report.Report) {
				r.TimeWait.Top = nil
				clientTo(r, "127.0.0.1", 8080, 20000, 100)
				clientTo(r, "10.0.0.6", 5432, 16000, 100)
			},
			want:   []string{IDTwReuse, IDFinTimeoutMyth},
			checks: []check{hasEvidence(IDTwReuse, map[string]any{"affected_destinations": 2})},
		},
		{
			name: "timestamps off",
			mutate: func(r *report.Report) {
				r.Sysctl["net.ipv4.tcp_timestamps"] = "0"
				clientTo(r, "10.0.0.5", 443, 15000, 100)
			},
			want: []string{IDTimestamps, IDTwReuse, IDFinTimeoutMyth},
			checks: []check{
				setTo(IDTimestamps, "net.ipv4.tcp_timestamps", "0", "1"),
				says(IDTimestamps, "cannot work"),
				says(IDTwReuse, "needs tcp_timestamps = 1"),
			},
		},
		{
			name: "timestamps off, reuse already 1",
			mutate: func(r *report.Report) {
				r.Sysctl["net.ipv4.tcp_timestamps"] = "0"
				r.Sysctl["net.ipv4.tcp_tw_reuse"] = "1"
				clientTo(r, "10.0.0.5", 443, 15000, 100)
			},
			want: []string{IDTimestamps, IDFinTimeoutMyth},
		},
		{
			name: "timestamps off without port pressure",
			mutate: func(r *report.Report) {
				r.Sysctl["net.ipv4.tcp_timestamps"] = "0"
			},
			want: []string{},
		},
		{
			name: "no tw_reuse_delay on older kernels",
			mutate: func(r *report.Report) {
				delete(r.Sysctl, "net.ipv4.tcp_tw_reuse_delay")
				clientTo(r, "10.0.0.5", 443, 15000, 100)
			},
			want:   []string{IDTwReuse, IDFinTimeoutMyth},
			checks: []check{saysNot(IDTwReuse, "tcp_tw_reuse_delay")},
		},
		{
			name: "port range unknown falls back to the default",
			mutate: func(r *report.Report) {
				r.PortExhaustion.PortRange = report.PortRange{}
				delete(r.Sysctl, "net.ipv4.ip_local_port_range")
				clientTo(r, "10.0.0.5", 443, 15000, 100)
			},
			want:   []string{IDTwReuse, IDFinTimeoutMyth},
			checks: []check{hasEvidence(IDTwReuse, map[string]any{"port_range": 28232, "port_range_assumed": true})},
		},
		{
			name: "range already as wide as it goes",
			mutate: func(r *report.Report) {
				r.Sysctl["net.ipv4.ip_local_port_range"] = "1024 65535"
				r.PortExhaustion.PortRange = report.PortRange{Low: 1024, High: 65535, Size: 64512}
				r.Sysctl["net.ipv4.tcp_tw_reuse"] = "1"
				clientTo(r, "10.0.0.5", 443, 60000, 1500)
				failTo(r, "10.0.0.5", 443, 500, 60000)
			},
			want: []string{IDConnectionPooling, IDFinTimeoutMyth},
			checks: []check{
				func(t *testing.T, adv []report.Advice) {
					if a := find(t, adv, IDConnectionPooling); a.Sysctl != "" {
						t.Errorf("connection-pooling has sysctl %q", a.Sysctl)
					}
				},
				says(IDConnectionPooling, "already as wide"),
			},
		},

		// server-time-wait
		{
			name:   "server-side TIME_WAIT",
			mutate: func(r *report.Report) { serverOn(r, "10.0.0.1", 80, 27000) },
			want:   []string{IDServerTimeWait, IDFinTimeoutMyth},
			checks: []check{
				setTo(IDServerTimeWait, "", "", "nothing to tune; for fewer, let clients close first (keep-alive, pooling)"),
				says(IDServerTimeWait, "27,000", "10.0.0.1:80", "only affects outgoing connect()", "holds no local port", "keep-alive"),
				hasEvidence(IDServerTimeWait, map[string]any{"time_wait_peak_server": 27000, "listen": "10.0.0.1:80"}),
			},
		},
		{
			name:   "small server-side TIME_WAIT",
			mutate: func(r *report.Report) { serverOn(r, "10.0.0.1", 80, 3000) },
			want:   []string{},
		},
		{
			name: "server-side TIME_WAIT near a small tcp_max_tw_buckets",
			mutate: func(r *report.Report) {
				r.Sysctl["net.ipv4.tcp_max_tw_buckets"] = "8192"
				serverOn(r, "10.0.0.1", 80, 3000)
			},
			want: []string{IDServerTimeWait, IDFinTimeoutMyth},
		},
		{
			name: "server-side TIME_WAIT outside the top list",
			mutate: func(r *report.Report) {
				r.TimeWait.Peak = 40000
				r.TimeWait.ByRole = report.ByRole{Client: 100, Server: 99900}
			},
			want: []string{IDServerTimeWait, IDFinTimeoutMyth},
		},

		// fin-timeout
		{
			name: "orphans at a meaningful peak",
			mutate: func(r *report.Report) {
				r.FinWait2Orphans = report.Orphans{Current: 80, Peak: 150, Created: 500,
					Ended: report.Ended{Expired: 300, BecameTimeWait: 100}, ByRole: report.ByRole{Server: 500}}
			},
			want: []string{IDFinTimeout},
			checks: []check{
				setTo(IDFinTimeout, "net.ipv4.tcp_fin_timeout", "60", "30"),
				says(IDFinTimeout, "never sent its FIN", "500 sockets", "does not shorten TIME_WAIT"),
				hasEvidence(IDFinTimeout, map[string]any{"orphans_peak": 150, "orphans_expired": 300}),
			},
		},
		{
			name: "orphans mostly expiring",
			mutate: func(r *report.Report) {
				r.FinWait2Orphans = report.Orphans{Peak: 5, Created: 40, Ended: report.Ended{Expired: 30, BecameTimeWait: 10}}
			},
			want: []string{IDFinTimeout},
		},
		{
			name: "few orphans",
			mutate: func(r *report.Report) {
				r.FinWait2Orphans = report.Orphans{Peak: 3, Created: 20, Ended: report.Ended{Expired: 5, BecameTimeWait: 15}}
			},
			want: []string{},
		},
		{
			name: "orphans many at once, but briefly: their FINs came late, not never",
			mutate: func(r *report.Report) {
				r.FinWait2Orphans = report.Orphans{Peak: 258, Created: 258, Ended: report.Ended{BecameTimeWait: 258}}
			},
			want: []string{},
		},
		{
			name: "many orphans still waiting for a FIN at the end",
			mutate: func(r *report.Report) {
				r.FinWait2Orphans = report.Orphans{Current: 300, Peak: 300, Created: 300}
			},
			want: []string{IDFinTimeout},
		},
		{
			name: "orphans that mostly get their FIN late",
			mutate: func(r *report.Report) {
				r.FinWait2Orphans = report.Orphans{Peak: 20, Created: 400, Ended: report.Ended{Expired: 50, BecameTimeWait: 350}}
			},
			want: []string{},
		},
		{
			name: "orphans but fin_timeout already low",
			mutate: func(r *report.Report) {
				r.Sysctl["net.ipv4.tcp_fin_timeout"] = "20"
				r.FinWait2Orphans = report.Orphans{Peak: 500, Created: 2000, Ended: report.Ended{Expired: 1500}}
				clientTo(r, "10.0.0.5", 443, 20000, 100)
			},
			want: []string{IDTwReuse}, // and no myth: the orphans do justify fin_timeout
		},
		{
			name: "high TIME_WAIT alone never lowers fin_timeout",
			mutate: func(r *report.Report) {
				r.TimeWait.Peak = 12000
			},
			want: []string{IDFinTimeoutMyth},
			checks: []check{
				setTo(IDFinTimeoutMyth, "net.ipv4.tcp_fin_timeout", "60", "60"),
				says(IDFinTimeoutMyth, "does not shorten it", "TCP_TIMEWAIT_LEN", "12,000"),
			},
		},
		{
			name: "myth after the user lowered fin_timeout",
			mutate: func(r *report.Report) {
				r.Sysctl["net.ipv4.tcp_fin_timeout"] = "15"
				serverOn(r, "10.0.0.1", 80, 27000)
			},
			want:   []string{IDServerTimeWait, IDFinTimeoutMyth},
			checks: []check{says(IDFinTimeoutMyth, "already 15 s")},
		},

		// max-tw-buckets
		{
			name: "TIME_WAIT table overflow",
			mutate: func(r *report.Report) {
				r.Sysctl["net.ipv4.tcp_max_tw_buckets"] = "16384"
				r.Netstat["TCPTimeWaitOverflow"] = 1234
				r.TimeWait.Peak = 16384
			},
			want: []string{IDMaxTwBuckets, IDFinTimeoutMyth},
			checks: []check{
				setTo(IDMaxTwBuckets, "net.ipv4.tcp_max_tw_buckets", "16384", "32768"),
				says(IDMaxTwBuckets, "1,234", "never lower"),
				hasEvidence(IDMaxTwBuckets, map[string]any{"time_wait_overflow": 1234}),
			},
		},
		{
			name: "overflow with the limit unknown",
			mutate: func(r *report.Report) {
				delete(r.Sysctl, "net.ipv4.tcp_max_tw_buckets")
				r.Netstat["TCPTimeWaitOverflow"] = 10
			},
			want:   []string{IDMaxTwBuckets}, // no myth: 120 TIME_WAIT sockets are not notable
			checks: []check{setTo(IDMaxTwBuckets, "net.ipv4.tcp_max_tw_buckets", "", "262144")},
		},
		{
			// The limit bounds every mini-socket, orphans included
			// (inet_twsk_alloc): with the limit unknown, room for twice
			// both populations.
			name: "overflow with orphans filling the table, limit unknown",
			mutate: func(r *report.Report) {
				delete(r.Sysctl, "net.ipv4.tcp_max_tw_buckets")
				r.Netstat["TCPTimeWaitOverflow"] = 10
				r.TimeWait.Peak = 100000
				r.FinWait2Orphans.Peak = 90000
				r.FinWait2Orphans.Current = 90000
				r.FinWait2Orphans.Created = 90000
			},
			want: []string{IDMaxTwBuckets, IDFinTimeout},
			checks: []check{
				setTo(IDMaxTwBuckets, "net.ipv4.tcp_max_tw_buckets", "", "380000"),
				says(IDMaxTwBuckets, "100,000 TIME_WAIT, 90,000 FIN_WAIT2 orphans, which count against it too"),
				hasEvidence(IDMaxTwBuckets, map[string]any{"orphans_peak": 90000, "time_wait_peak": 100000}),
			},
		},

		// close-wait-leak
		{
			name: "two processes leak CLOSE_WAIT",
			mutate: func(r *report.Report) {
				r.CloseWait.Current = 15
				r.CloseWait.ByProcess = []report.LeakOwner{
					{PID: 123, Comm: "nginx", Cmdline: "nginx: worker process", Count: 12, OldestS: 312.5,
						Lports: []int{8080}, Peers: []string{"10.0.0.7:51234", "10.0.0.8:40000", "10.0.0.9:40001", "10.0.0.10:40002"}},
					{PID: 0, Count: 2, OldestS: 45, Lports: []int{9000}, Peers: []string{"10.0.0.11:1234"}},
				}
			},
			want: []string{IDCloseWaitLeak, IDCloseWaitLeak},
			checks: []check{
				func(t *testing.T, adv []report.Advice) {
					a, b := adv[0], adv[1]
					for _, x := range []report.Advice{a, b} {
						if x.Severity != Warning || x.Sysctl != "" || x.Current != "" {
							t.Errorf("leak advice %+v: want a warning without sysctl", x)
						}
						for _, p := range []string{"close()", "No sysctl", "keepalive settings do not help"} {
							if !strings.Contains(x.Reason, p) {
								t.Errorf("leak reason lacks %q: %s", p, x.Reason)
							}
						}
					}
					for _, p := range []string{"nginx (pid 123", "worker process", "12 sockets", "port 8080",
						"10.0.0.7:51234", "10.0.0.9:40001, ...", "5.2 min"} {
						if !strings.Contains(a.Reason, p) {
							t.Errorf("first leak reason lacks %q: %s", p, a.Reason)
						}
					}
					if strings.Contains(a.Reason, "10.0.0.10") {
						t.Errorf("reason names more than %d peers: %s", reasonPeers, a.Reason)
					}
					if !strings.Contains(b.Reason, "unknown process") {
						t.Errorf("second leak reason: %s", b.Reason)
					}
					if a.Evidence["pid"] != 123 || a.Evidence["count"] != 12 {
						t.Errorf("evidence %v", a.Evidence)
					}
				},
			},
		},
		{
			name: "a server that stopped reading, near its fd limit",
			mutate: func(r *report.Report) {
				r.CloseWait.ByProcess = []report.LeakOwner{leaker(321, "java", report.LeakGroup{
					Diagnosis: report.DiagUnread, Role: "server", Lport: 8443, Count: 40, OldestS: 900,
					Unread: 40, UnreadBytes: 5120, Peers: []string{"10.0.0.7:50000"}}, 1012, 1024, 4, report.AgeTCPInfo)}
			},
			want: []string{IDCloseWaitLeak},
			checks: []check{
				says(IDCloseWaitLeak, "java (pid 321)", "40 sockets in CLOSE_WAIT on local port 8443", "never read to the end",
					"40 of them still hold data (5,120 bytes in all)", "stopped reading", "jstack", "since 2026-11-23 20:04:00 UTC",
					"from tcp_info", "1,012 of 1,024 allowed file descriptors", "EMFILE soon",
					"gains 4 CLOSE_WAIT sockets a minute (judging by the sockets' ages)", "in about 3.0 min", "No sysctl"),
				saysNot(IDCloseWaitLeak, "read the EOF"),
				hasEvidence(IDCloseWaitLeak, map[string]any{"diagnosis": "unread", "fds": 1012, "fd_limit": 1024,
					"growth_per_min": 4, "time_to_fd_limit_s": 180, "unread_bytes": 5120, "role": "server", "age_source": "tcp_info"}),
				recommends(IDCloseWaitLeak, "find why it stopped reading"),
			},
		},
		{
			name: "a server that read EOF and never closed",
			mutate: func(r *report.Report) {
				r.CloseWait.ByProcess = []report.LeakOwner{leaker(55, "node", report.LeakGroup{
					Diagnosis: report.DiagNotClosed, Role: "server", Lport: 3000, Count: 7, OldestS: 60, ReadEOF: 7}, 40, 1048576, 0.5, report.AgeTraced)}
			},
			want: []string{IDCloseWaitLeak},
			checks: []check{
				says(IDCloseWaitLeak, "node (pid 55)", "7 sockets in CLOSE_WAIT on local port 3000", "read to the end (Recv-Q 0)",
					"read the EOF and never called close()", "40 of 1,048,576", "0.5 CLOSE_WAIT sockets a minute (while traced)"),
				saysNot(IDCloseWaitLeak, "stopped reading"),
				saysNot(IDCloseWaitLeak, "EMFILE"),
				hasEvidence(IDCloseWaitLeak, map[string]any{"diagnosis": "not_closed", "read_eof": 7, "growth_source": "traced"}),
				recommends(IDCloseWaitLeak, "close() sockets after reading EOF"),
			},
		},
		{
			name: "a client whose backend drops idle connections, at its fd limit",
			mutate: func(r *report.Report) {
				idle := 300.0
				r.CloseWait.ByProcess = []report.LeakOwner{leaker(77, "app", report.LeakGroup{
					Diagnosis: report.DiagClientPool, Role: "client", Backend: "10.0.0.5:6379", Count: 25, OldestS: 4000,
					Unread: 25, IdleBeforeCloseS: &idle}, 1024, 1024, 0, report.AgeTCPInfo)}
			},
			want: []string{IDCloseWaitLeak},
			checks: []check{
				says(IDCloseWaitLeak, "app (pid 77) connect()ed to 10.0.0.5:6379", "25 of those connections in CLOSE_WAIT",
					"the backend closed them first", "idle for about 5.0 min", "connection pool of app never noticed",
					"evict idle connections", "at the limit", "EMFILE now"),
				saysNot(IDCloseWaitLeak, "local port"),
				hasEvidence(IDCloseWaitLeak, map[string]any{"diagnosis": "client_pool", "backend": "10.0.0.5:6379",
					"idle_before_close_s": 300, "time_to_fd_limit_s": 0}),
				recommends(IDCloseWaitLeak, "connection pool of app to 10.0.0.5:6379"),
			},
		},
		{
			name: "one process, two kinds of leak: one advice each, the outlook once",
			mutate: func(r *report.Report) {
				p := leaker(9, "svc", report.LeakGroup{Diagnosis: report.DiagNotClosed, Role: "server", Lport: 80, Count: 30, OldestS: 100, ReadEOF: 30},
					500, 1024, 2, report.AgeTraced)
				p.Groups = append(p.Groups, report.LeakGroup{Diagnosis: report.DiagClientPool, Role: "client",
					Backend: "[2001:db8::1]:5432", Count: 5, OldestS: 50, Unread: 5})
				p.Count = 35
				r.CloseWait.ByProcess = []report.LeakOwner{p}
			},
			want: []string{IDCloseWaitLeak, IDCloseWaitLeak},
			checks: []check{func(t *testing.T, adv []report.Advice) {
				if !strings.Contains(adv[0].Reason, "never called close()") || !strings.Contains(adv[0].Reason, "500 of 1,024") {
					t.Errorf("first advice: %s", adv[0].Reason)
				}
				if !strings.Contains(adv[1].Reason, "connect()ed to [2001:db8::1]:5432") || strings.Contains(adv[1].Reason, "file descriptors") {
					t.Errorf("second advice: %s", adv[1].Reason)
				}
				if adv[1].Evidence["process_count"] != 35 || adv[1].Evidence["count"] != 5 {
					t.Errorf("second evidence: %v", adv[1].Evidence)
				}
			}},
		},
		{
			name: "a leak whose age is only a lower bound",
			mutate: func(r *report.Report) {
				r.CloseWait.ByProcess = []report.LeakOwner{leaker(3, "x", report.LeakGroup{
					Diagnosis: report.DiagNotClosed, Lport: 81, Count: 1, OldestS: 40}, 0, 0, -1, report.AgeCensus)}
			},
			want:   []string{IDCloseWaitLeak},
			checks: []check{says(IDCloseWaitLeak, "the oldest for at least 40.0 s"), saysNot(IDCloseWaitLeak, "file descriptors")},
		},
		{
			name:   "CLOSE_WAIT below the threshold is no leak",
			mutate: func(r *report.Report) { r.CloseWait.Current = 40 },
			want:   []string{},
		},

		// from a snapshot
		{
			name: "snapshot: orphans waiting long for their FIN",
			mutate: func(r *report.Report) {
				r.Mode = report.ModeSnapshot
				r.FinWait2Orphans = report.Orphans{Current: 400, Peak: 400, Preexisting: 400, WaitedP50S: 41.5, WaitedMaxS: 59.9,
					ByRole: report.ByRole{Server: 400}}
			},
			want: []string{IDFinTimeout},
			checks: []check{
				setTo(IDFinTimeout, "net.ipv4.tcp_fin_timeout", "60", "30"),
				says(IDFinTimeout, "400 sockets are orphaned in FIN_WAIT2 now", "41.5 s or more", "59.9 s"),
				hasEvidence(IDFinTimeout, map[string]any{"orphans_now": 400, "orphans_waited_p50_s": 41.5}),
			},
		},
		{
			name: "snapshot: orphans whose FIN is merely late",
			mutate: func(r *report.Report) {
				r.Mode = report.ModeSnapshot
				r.FinWait2Orphans = report.Orphans{Current: 400, Peak: 400, WaitedP50S: 0.02, WaitedMaxS: 0.3}
			},
			want: []string{},
		},
		{
			name: "snapshot: the ports towards one destination nearly all in use",
			mutate: func(r *report.Report) {
				r.Mode = report.ModeSnapshot
				r.TimeWait.Top = nil
				r.PortExhaustion.Headroom = []report.PortHeadroom{
					{Laddr: "10.0.0.1", Addr: "10.0.0.5", Port: 443, InUse: 27000, TimeWait: 25000, Free: 1232},
					{Laddr: "10.0.0.2", Addr: "10.0.0.5", Port: 443, InUse: 100, TimeWait: 90, Free: 28132},
				}
			},
			want: []string{IDTwReuse, IDPortRange},
			checks: []check{
				says(IDTwReuse, "27,000 of its local ports towards it are in use (25,000 in TIME_WAIT"),
				hasEvidence(IDTwReuse, map[string]any{"ports_in_use": 27000, "destination": "10.0.0.5:443"}),
			},
		},
		{
			name: "snapshot: few ports in use",
			mutate: func(r *report.Report) {
				r.Mode = report.ModeSnapshot
				r.PortExhaustion.Headroom = []report.PortHeadroom{{Laddr: "10.0.0.1", Addr: "10.0.0.5", Port: 443, InUse: 900, Free: 27332}}
			},
			want: []string{},
		},

		// tw-recycle
		{
			name:   "tw_recycle on an old kernel",
			mutate: func(r *report.Report) { r.Kernel = "4.9.0"; r.Sysctl["net.ipv4.tcp_tw_recycle"] = "1" },
			want:   []string{IDTwRecycle},
			checks: []check{setTo(IDTwRecycle, "net.ipv4.tcp_tw_recycle", "1", "0"), says(IDTwRecycle, "NAT", "4.12")},
		},
		{
			name:   "tw_recycle off",
			mutate: func(r *report.Report) { r.Sysctl["net.ipv4.tcp_tw_recycle"] = "0" },
			want:   []string{},
		},

		// ordering
		{
			name: "everything at once, most important first",
			mutate: func(r *report.Report) {
				r.Sysctl["net.ipv4.tcp_tw_recycle"] = "1"
				r.Netstat["TCPTimeWaitOverflow"] = 5
				clientTo(r, "10.0.0.5", 443, 27000, 600)
				failTo(r, "10.0.0.5", 443, 12, 27000)
				serverOn(r, "10.0.0.1", 80, 27000)
				r.CloseWait.ByProcess = []report.LeakOwner{{PID: 7, Comm: "java", Count: 3, OldestS: 100, Lports: []int{8443}}}
				r.FinWait2Orphans = report.Orphans{Peak: 200, Created: 900, Ended: report.Ended{Expired: 700}}
			},
			want: []string{IDTwRecycle, IDTwReuse, IDPortRange, IDCloseWaitLeak, IDMaxTwBuckets, IDFinTimeout, IDServerTimeWait},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := quiet()
			tc.mutate(r)
			before, _ := json.Marshal(r)
			adv := Advise(r)
			if adv == nil {
				t.Fatal("Advise returned nil, want a non-nil slice")
			}
			if got := ids(adv); !slices.Equal(got, tc.want) {
				t.Fatalf("advice %v, want %v", got, tc.want)
			}
			for _, c := range tc.checks {
				c(t, adv)
			}
			invariants(t, adv)
			if after, _ := json.Marshal(r); string(after) != string(before) {
				t.Error("Advise modified the report")
			}
			if again := Advise(r); !reflect.DeepEqual(again, adv) {
				t.Error("Advise is not deterministic")
			}
		})
	}
}

// invariants hold for every piece of advice, whatever the report.
func invariants(t *testing.T, adv []report.Advice) {
	t.Helper()
	seenInfo := false
	for _, a := range adv {
		if a.Severity != Warning && a.Severity != Info {
			t.Errorf("%s: severity %q", a.ID, a.Severity)
		}
		if a.Severity == Info {
			seenInfo = true
		} else if seenInfo {
			t.Errorf("%s: warning after an info note", a.ID)
		}
		if a.ID == "" || strings.ToLower(a.ID) != a.ID || strings.ContainsAny(a.ID, " _") {
			t.Errorf("ID %q is not kebab-case", a.ID)
		}
		if a.Reason == "" || a.Recommended == "" && a.Sysctl == "" {
			t.Errorf("%s: empty reason or recommendation: %+v", a.ID, a)
		}
		if len(a.Evidence) == 0 {
			t.Errorf("%s: no evidence", a.ID)
		}
		if strings.Contains(a.Sysctl, "keepalive") {
			t.Errorf("%s: keepalive never fixes TIME_WAIT or CLOSE_WAIT", a.ID)
		}
		if a.Sysctl == "net.ipv4.tcp_tw_recycle" && a.Recommended != "0" {
			t.Errorf("%s: recommends tcp_tw_recycle = %s", a.ID, a.Recommended)
		}
		if a.Sysctl == "net.ipv4.tcp_max_tw_buckets" {
			cur, _ := strconv.Atoi(a.Current)
			if rec, err := strconv.Atoi(a.Recommended); err != nil || rec <= cur {
				t.Errorf("%s: does not raise tcp_max_tw_buckets: %s -> %s", a.ID, a.Current, a.Recommended)
			}
		}
		if _, err := json.Marshal(a); err != nil {
			t.Errorf("%s: %v", a.ID, err)
		}
	}
}

func TestAdviseNil(t *testing.T) {
	if adv := Advise(nil); adv == nil || len(adv) != 0 {
		t.Fatalf("Advise(nil) = %v, want an empty slice", adv)
	}
	if adv := Advise(&report.Report{}); adv == nil || len(adv) != 0 {
		t.Fatalf("Advise(empty report) = %v, want an empty slice", adv)
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate("héllo", 2); got != "h..." {
		t.Errorf("truncate cut a rune: %q", got)
	}
	if got := truncate("short", 10); got != "short" {
		t.Errorf("truncate(short) = %q", got)
	}
}

// TestAdviseHostileNames: a reason and a recommendation are sentences
// printed to terminals, so the process name and command line in them are
// escaped; the evidence keeps them exact, for programs.
func TestAdviseHostileNames(t *testing.T) {
	const comm = "x\x1b[2J\x1b[31mEVIL"
	const cmdline = "srv \x1b]52;c;cm0gLXJmIC8K\x07 \"q\" \xff ÿ中文"
	r := quiet()
	r.CloseWait.Current = 1
	r.CloseWait.ByProcess = []report.LeakOwner{{PID: 7, Comm: comm, Cmdline: cmdline, Count: 1, OldestS: 60, Lports: []int{80}}}
	a := find(t, Advise(r), IDCloseWaitLeak)
	for what, s := range map[string]string{"reason": a.Reason, "recommended": a.Recommended} {
		if strings.ContainsAny(s, "\x1b\x07") || !utf8.ValidString(s) {
			t.Errorf("%s holds raw control characters or invalid UTF-8: %q", what, s)
		}
		if !strings.Contains(s, `x\x1b[2J\x1b[31mEVIL`) {
			t.Errorf("%s does not name the process escaped: %q", what, s)
		}
	}
	if want := `(pid 7, "srv \x1b]52;c;cm0gLXJmIC8K\x07 \"q\" \xff ÿ中文")`; !strings.Contains(a.Reason, want) {
		t.Errorf("reason %q lacks the quoted, escaped command line %s", a.Reason, want)
	}
	if a.Evidence["comm"] != comm || a.Evidence["cmdline"] != cmdline {
		t.Errorf("evidence %v: want comm and cmdline exactly as given", a.Evidence)
	}
}
