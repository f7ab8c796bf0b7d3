// Package advisor turns a report's measured facts into advice: which
// sysctl to change, to what, and why; and, as often, which problem no
// sysctl fixes.
//
// The advice follows the kernel as it is (Documentation/networking/
// ip-sysctl.rst), not the folklore users start from: TIME_WAIT lasts 60 s
// whatever tcp_fin_timeout says, tcp_tw_reuse only helps the side that
// calls connect(), tcp_tw_recycle is gone (and broke NAT), and no sysctl
// ends CLOSE_WAIT. Every piece of advice names the numbers it rests on.
//
// The package is pure: no I/O, no clock, no state. Advise is a function of
// the report alone, so the same report always gives the same advice.
package advisor

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tcptrace/tcptrace/internal/hostinfo"
	"github.com/tcptrace/tcptrace/internal/human"
	"github.com/tcptrace/tcptrace/internal/report"
	"github.com/tcptrace/tcptrace/internal/safe"
)

// Severities of advice. A warning is something measured that hurts or is
// about to; an info note corrects a likely misunderstanding or says that
// what looks alarming is harmless.
const (
	Warning = "warning"
	Info    = "info"
)

// Advice IDs. They are part of the JSON contract: scripts match on them,
// so they never change meaning.
const (
	// IDTwRecycle: tcp_tw_recycle is on (kernels before 4.12 only).
	IDTwRecycle = "tw-recycle"
	// IDTimestamps: timestamps are off, so tcp_tw_reuse cannot work.
	IDTimestamps = "tcp-timestamps"
	// IDTwReuse: this host, as a client, runs short of local ports.
	IDTwReuse = "tw-reuse"
	// IDTwReuseOn: reuse is already on for the (loopback) destinations
	// that need it; the limit lies elsewhere.
	IDTwReuseOn = "tw-reuse-already-on"
	// IDPortRange: client churn needs more local ports than the range has.
	IDPortRange = "port-range"
	// IDConnectionPooling: the range is already as wide as it goes and
	// the churn still needs more ports.
	IDConnectionPooling = "connection-pooling"
	// IDCloseWaitLeak: a process does not close sockets its peers closed.
	IDCloseWaitLeak = "close-wait-leak"
	// IDMaxTwBuckets: the TIME_WAIT table overflowed.
	IDMaxTwBuckets = "max-tw-buckets"
	// IDFinTimeout: orphaned FIN_WAIT2 sockets whose peers never send
	// their FIN.
	IDFinTimeout = "fin-timeout"
	// IDServerTimeWait: much TIME_WAIT on the accepting side, which is
	// harmless and which tcp_tw_reuse does not touch.
	IDServerTimeWait = "server-time-wait"
	// IDFinTimeoutMyth: TIME_WAIT is high and tcp_fin_timeout is the
	// wrong lever for it.
	IDFinTimeoutMyth = "fin-timeout-myth"
)

// Thresholds. Each says when a number stops being noise.
const (
	// timeWaitSeconds is TCP_TIMEWAIT_LEN: TIME_WAIT lasts 60 s, fixed
	// when the kernel is compiled. A client that closes first holds each
	// local port this long, so a connection rate of R per second needs
	// R×60 ports to one destination.
	timeWaitSeconds = 60

	// defaultPortRangeSize is the kernel's default ip_local_port_range,
	// 32768–60999. It stands in when the report lacks the range, so that
	// the rate rules still judge against what the host most likely has.
	defaultPortRangeSize = 28232

	// portPressurePercent: a client destination whose TIME_WAIT
	// population, or whose connection rate × 60 s, reaches half the port
	// range is one traffic doubling away from connect() failing with
	// EADDRNOTAVAIL. Advise before it fails, not only after.
	portPressurePercent = 50

	// portFullPercent: a census finding this share of the range in use
	// towards one destination means the range itself is the limit, as
	// much as a measured rate needing more ports than it has.
	portFullPercent = 90

	// wideLow and wideHigh are the widest sensible ip_local_port_range:
	// below 1024 are the privileged ports services listen on.
	wideLow, wideHigh = 1024, 65535

	// serverTimeWaitPeak: below about 10k, TIME_WAIT on a server costs a
	// few megabytes at most and is not worth a sysadmin's attention.
	serverTimeWaitPeak = 10000
	// serverTimeWaitBucketsPercent: at a quarter of tcp_max_tw_buckets a
	// burst can overflow the table, so the note is worth giving even when
	// the absolute number is small (a host with a small limit).
	serverTimeWaitBucketsPercent = 25

	// notableTimeWaitPeak: from here on TIME_WAIT is visible enough in
	// `ss -s` that users reach for the seed article's tcp_fin_timeout
	// advice; the myth note answers before they do.
	notableTimeWaitPeak = 10000
	// notableWithAdvicePeak: when other TIME_WAIT advice is given, the
	// user is already looking at TIME_WAIT, and a thousand sockets in
	// `ss` are enough to send them to the seed article. Fewer, and
	// TIME_WAIT is not what the advice is about.
	notableWithAdvicePeak = 1000

	// orphanPeakMin: fewer FIN_WAIT2 orphans still waiting at the end than
	// this hold a negligible number of ports and memory, whatever the
	// timeout. The peak is not the test: under heavy churn many sockets
	// are orphans for a few milliseconds, until a FIN that is merely late
	// arrives, and a shorter timeout would change nothing for them.
	orphanPeakMin = 100
	// orphanOverdueS: in a snapshot, orphans that have waited this long
	// for their peer's FIN (at the median) are waiting for one that does
	// not come: a FIN merely delayed arrives within milliseconds.
	orphanOverdueS = 5
	// orphanExpiredMin: the fewest orphans that ran out the timer (the
	// peer never sent its FIN) for "mostly expiring" to mean a pattern
	// rather than a few lost packets.
	orphanExpiredMin = 10
	// recommendedFinTimeout halves the default 60 s: still far longer
	// than any round trip, so a peer that is merely slow still gets its
	// FIN through, while sockets of peers that never close go twice as
	// fast. It is the top of the commonly cited 15–30 s range: the
	// conservative end, since the evidence is about peers, not this host.
	recommendedFinTimeout = 30

	// twSockBytes approximates one TIME_WAIT mini-socket in memory (the
	// tw_sock_TCP slab object is about 256 bytes on x86_64). It sizes the
	// cost of TIME_WAIT in the reasons.
	twSockBytes = 256

	// reasonPeers is how many peers a CLOSE_WAIT reason names: enough to
	// recognize the service, short enough to read.
	reasonPeers = 3
	// reasonCmdline bounds the command line quoted in a reason.
	reasonCmdline = 80
	// fdNearPercent: a process holding this share of its RLIMIT_NOFILE is
	// a burst of connections away from EMFILE.
	fdNearPercent = 90
)

// Advise returns advice for the measured facts in r (everything but
// r.Recommendations), most important first: warnings before info notes,
// and within each, broken settings, then port exhaustion, then leaks,
// then the rest. Nothing wrong gives an empty, non-nil slice.
func Advise(r *report.Report) []report.Advice {
	out := []report.Advice{}
	if r == nil {
		return out
	}
	a := &advisor{r: r, s: hostinfo.Sysctls(r.Sysctl), out: out}
	a.twRecycle()
	a.clientPorts()
	a.closeWaitLeaks()
	a.maxTwBuckets()
	orphansJustify := a.finTimeout()
	a.serverTimeWait()
	if !orphansJustify {
		a.finTimeoutMyth()
	}
	// Stable: the order the rules ran in is the importance within a
	// severity.
	slices.SortStableFunc(a.out, func(x, y report.Advice) int {
		return cmp.Compare(rank(x.Severity), rank(y.Severity))
	})
	return a.out
}

func rank(severity string) int {
	if severity == Warning {
		return 0
	}
	return 1
}

// advisor carries one run of Advise.
type advisor struct {
	r   *report.Report
	s   hostinfo.Sysctls
	out []report.Advice
	// timeWaitAdvice says some advice about TIME_WAIT was given, which
	// is what makes the fin-timeout myth worth correcting.
	timeWaitAdvice bool
}

func (a *advisor) add(adv report.Advice) {
	switch adv.ID {
	case IDTimestamps, IDTwReuse, IDTwReuseOn, IDPortRange, IDConnectionPooling, IDMaxTwBuckets, IDServerTimeWait:
		a.timeWaitAdvice = true
	}
	a.out = append(a.out, adv)
}

// tw-recycle: only kernels before 4.12 have the sysctl at all.
func (a *advisor) twRecycle() {
	v, ok := a.r.Sysctl[hostinfo.TwRecycle]
	if !ok || v == "0" {
		return
	}
	a.add(report.Advice{
		ID: IDTwRecycle, Severity: Warning, Sysctl: hostinfo.TwRecycle, Current: v, Recommended: "0",
		Reason: "tcp_tw_recycle is on: it drops connections from clients behind NAT, whose " +
			"timestamps do not increase across hosts sharing one address, and was removed from " +
			"Linux in 4.12 for that reason. Turn it off; tcp_tw_reuse is the safe way for clients " +
			"to reuse TIME_WAIT ports.",
		Evidence: map[string]any{"tcp_tw_recycle": v, "kernel": a.r.Kernel},
	})
}

// clientDest is one destination this host connects to, with the numbers
// that decide whether it runs short of local ports.
type clientDest struct {
	name     string // "10.0.0.5:443"
	loopback bool
	peak     int64  // TIME_WAIT (and orphan) population at its peak
	inUse    int64  // local ports in use towards it, any state (census)
	timeWait int64  // of those, in TIME_WAIT
	perS     uint64 // most connections closed into TIME_WAIT in one second
	need     int64  // ports perS needs: perS × 60 s
	failures uint64 // connect() calls that found no free port
}

// clientDests merges the client-role TIME_WAIT destinations with the
// destinations connect() failed for.
func (a *advisor) clientDests() []*clientDest {
	var list []*clientDest
	byName := map[string]*clientDest{}
	get := func(addr string, port int) *clientDest {
		name := hostPort(addr, port)
		if d, ok := byName[name]; ok {
			return d
		}
		d := &clientDest{name: name, loopback: isLoopback(addr)}
		byName[name] = d
		list = append(list, d)
		return d
	}
	for _, t := range a.r.TimeWait.Top {
		if t.Role != "client" {
			continue
		}
		d := get(t.Addr, t.Port)
		d.peak = max(d.peak, t.Peak)
		d.perS = max(d.perS, t.PeakPerS)
		d.need = int64(d.perS) * timeWaitSeconds
	}
	for _, f := range a.r.PortExhaustion.ByDestination {
		d := get(f.Addr, f.Port)
		d.failures += f.Failures
		d.peak = max(d.peak, f.TimeWaitPeak)
	}
	// The census's count of ports in use per source address: the
	// fullest source address is the one that runs out first.
	for _, h := range a.r.PortExhaustion.Headroom {
		d := get(h.Addr, h.Port)
		if int64(h.InUse) > d.inUse {
			d.inUse, d.timeWait = int64(h.InUse), int64(h.TimeWait)
		}
	}
	return list
}

// portRange returns the range's size and its text, falling back to the
// kernel default when the report does not have it.
func (a *advisor) portRange() (size int, text string, known bool) {
	pr := a.r.PortExhaustion.PortRange
	if pr.Size > 0 {
		return pr.Size, fmt.Sprintf("%d %d", pr.Low, pr.High), true
	}
	if lo, hi, ok := a.s.PortRange(); ok {
		return hi - lo + 1, fmt.Sprintf("%d %d", lo, hi), true
	}
	return defaultPortRangeSize, "32768 60999", false
}

// clientPorts gives the advice for a client running short of local ports:
// tcp_timestamps, tcp_tw_reuse, ip_local_port_range.
func (a *advisor) clientPorts() {
	size, rangeText, rangeKnown := a.portRange()
	failures := a.r.PortExhaustion.ConnectFailures
	var affected, exceeded []*clientDest
	for _, d := range a.clientDests() {
		pressed := d.failures > 0 ||
			d.peak*100 >= int64(size)*portPressurePercent ||
			d.inUse*100 >= int64(size)*portPressurePercent ||
			d.need*100 >= int64(size)*portPressurePercent
		if pressed {
			affected = append(affected, d)
		}
		if d.failures > 0 || d.need > int64(size) || d.inUse*100 >= int64(size)*portFullPercent {
			exceeded = append(exceeded, d)
		}
	}
	if len(affected) == 0 && failures == 0 {
		return
	}
	worst := func(l []*clientDest) {
		slices.SortStableFunc(l, func(x, y *clientDest) int {
			return cmp.Or(cmp.Compare(y.failures, x.failures),
				cmp.Compare(max(y.peak, y.need), max(x.peak, x.need)),
				strings.Compare(x.name, y.name))
		})
	}
	worst(affected)
	worst(exceeded)

	// Reuse to loopback is what value 2 allows; a failure with no known
	// destination counts as non-loopback, the case that needs value 1.
	nonLoopback := len(affected) == 0
	for _, d := range affected {
		nonLoopback = nonLoopback || !d.loopback
	}
	reuseText, reuseKnown := a.r.Sysctl[hostinfo.TwReuse]
	reuse, _ := a.s.Int(hostinfo.TwReuse)
	if !reuseKnown {
		reuse = -1
	}
	tsText := a.r.Sysctl[hostinfo.Timestamps]
	tsOff := tsText == "0"
	delayText, hasDelay := a.r.Sysctl[hostinfo.TwReuseDelay]
	reuseWorks := !tsOff && (reuse == 1 || (reuse == 2 && !nonLoopback))

	ev := func() map[string]any {
		e := map[string]any{
			"port_range":       size,
			"connect_failures": failures,
		}
		if len(affected) > 0 {
			d := affected[0]
			e["destination"] = d.name
			e["time_wait_peak"] = d.peak
			e["peak_per_s"] = d.perS
			e["needed_ports"] = d.need
			e["affected_destinations"] = len(affected)
			if d.inUse > 0 {
				e["ports_in_use"] = d.inUse
			}
		}
		if !rangeKnown {
			e["port_range_assumed"] = true
		}
		return e
	}
	finding := a.clientFinding(affected, size, failures)

	if tsOff {
		e := ev()
		e["tcp_timestamps"] = tsText
		a.add(report.Advice{
			ID: IDTimestamps, Severity: Warning, Sysctl: hostinfo.Timestamps, Current: tsText, Recommended: "1",
			Reason: finding + " tcp_tw_reuse, the fix for that, only reuses a TIME_WAIT port when TCP " +
				"timestamps prove the old connection's packets are gone, and timestamps are off " +
				"(tcp_timestamps = 0), so reuse cannot work: turn them on first.",
			Evidence: e,
		})
	}
	// Before tcp_tw_reuse_delay (about 6.14) the age was fixed at 1 s.
	delay := " (older than 1 s)"
	if hasDelay {
		delay = fmt.Sprintf(" (older than net.ipv4.tcp_tw_reuse_delay = %s ms)", delayText)
	}
	switch {
	case reuse != 1 && (nonLoopback || reuse != 2):
		why := "it is off"
		if reuse == 2 {
			why = "the current value 2 allows that only for loopback addresses"
		} else if !reuseKnown {
			why = "the setting was not read"
		}
		reason := finding + " tcp_tw_reuse = 1 lets connect() take a port whose TIME_WAIT towards the " +
			"same destination is old enough" + delay + ", made safe by TCP timestamps (both ends must use them); " + why + "."
		if tsOff {
			reason += " It needs tcp_timestamps = 1 (see above)."
		}
		e := ev()
		e["tcp_tw_reuse"] = reuseText
		if hasDelay {
			e["tcp_tw_reuse_delay"] = delayText
		}
		a.add(report.Advice{
			ID: IDTwReuse, Severity: Warning, Sysctl: hostinfo.TwReuse, Current: reuseText, Recommended: "1",
			Reason: reason, Evidence: e,
		})
	case reuse == 2 && !tsOff:
		e := ev()
		e["tcp_tw_reuse"] = reuseText
		a.add(report.Advice{
			ID: IDTwReuseOn, Severity: Info, Sysctl: hostinfo.TwReuse, Current: reuseText, Recommended: reuseText,
			Reason: finding + " All of it goes to loopback addresses, where tcp_tw_reuse = 2 (the default) " +
				"already reuses TIME_WAIT ports" + delay + ", so changing it gains nothing: the limit is the " +
				"port range or the churn itself (widen ip_local_port_range, reuse connections).",
			Evidence: e,
		})
	}

	// With reuse working and nothing failing, a port is held about a
	// second rather than 60: the range is not the limit.
	if failures == 0 && (len(exceeded) == 0 || reuseWorks) {
		return
	}
	a.portRangeAdvice(exceeded, size, rangeText, failures, ev)
}

// clientFinding is the first sentence of the client-side advice: what was
// measured against what the range allows.
func (a *advisor) clientFinding(affected []*clientDest, size int, failures uint64) string {
	var b strings.Builder
	if len(affected) > 0 {
		d := affected[0]
		if d.inUse > d.peak {
			fmt.Fprintf(&b, "This host connects to %s: %s of its local ports towards it are in use (%s in TIME_WAIT, "+
				"%d s each) against a range of %s", d.name, human.Grouped(d.inUse), human.Grouped(d.timeWait), timeWaitSeconds,
				human.Grouped(int64(size)))
		} else if d.peak > 0 {
			fmt.Fprintf(&b, "This host connects to %s and closes first: up to %s of its local ports sat in TIME_WAIT "+
				"(%d s each) against a range of %s", d.name, human.Grouped(d.peak), timeWaitSeconds, human.Grouped(int64(size)))
		} else {
			fmt.Fprintf(&b, "This host ran out of local ports connecting to %s (a range of %s)", d.name, human.Grouped(int64(size)))
		}
		if d.perS > 0 {
			fmt.Fprintf(&b, ", at up to %s new connections/s, which hold %s ports over %d s", human.Grouped(int64(d.perS)), human.Grouped(d.need), timeWaitSeconds)
		}
		if n := len(affected) - 1; n > 0 {
			fmt.Fprintf(&b, "; %d more destination%s near the limit", n, human.Plural(n))
		}
	} else {
		b.WriteString("This host ran out of local ports for outgoing connections")
	}
	if failures > 0 {
		fmt.Fprintf(&b, ", and %s connect() call%s failed with EADDRNOTAVAIL (no free local port)",
			human.Grouped(int64(failures)), human.Plural(int(failures)))
	}
	b.WriteString(".")
	return b.String()
}

// portRangeAdvice widens ip_local_port_range, or, when it is already as
// wide as it goes, says the churn itself must drop.
func (a *advisor) portRangeAdvice(exceeded []*clientDest, size int, rangeText string, failures uint64, ev func() map[string]any) {
	var need int64
	var dest string
	if len(exceeded) > 0 {
		need, dest = exceeded[0].need, exceeded[0].name
	}
	e := ev()
	if dest != "" {
		e["destination"] = dest
		e["needed_ports"] = need
		e["peak_per_s"] = exceeded[0].perS
		e["time_wait_peak"] = exceeded[0].peak
	}
	var b strings.Builder
	if need > 0 {
		fmt.Fprintf(&b, "Connections to %s were opened at up to %s/s and each holds its local port for %d s in "+
			"TIME_WAIT, which needs %s ports, but ip_local_port_range (%s) gives %s per destination",
			dest, human.Grouped(int64(exceeded[0].perS)), timeWaitSeconds, human.Grouped(need), rangeText, human.Grouped(int64(size)))
	} else {
		fmt.Fprintf(&b, "ip_local_port_range (%s) gives %s local ports per destination", rangeText, human.Grouped(int64(size)))
	}
	if failures > 0 {
		fmt.Fprintf(&b, ", and %s connect() call%s already failed for lack of one", human.Grouped(int64(failures)), human.Plural(int(failures)))
	}
	b.WriteString(".")

	lo, hi, ok := a.s.PortRange()
	if !ok {
		lo, hi = 32768, 60999
	}
	newLo, newHi := min(lo, wideLow), max(hi, wideHigh)
	newSize := int64(newHi - newLo + 1)
	if newSize <= int64(size) {
		a.add(report.Advice{
			ID: IDConnectionPooling, Severity: Warning, Sysctl: "",
			Recommended: "reuse connections (HTTP keep-alive, a connection pool) or spread them over more source addresses",
			Reason: b.String() + " The range is already as wide as it goes: make fewer connections (keep-alive, " +
				"pooling), let the server close first, or connect from more source addresses.",
			Evidence: e,
		})
		return
	}
	fmt.Fprintf(&b, " Widening it to %d %d gives %s; first list the ports your services listen on below %d in "+
		"net.ipv4.ip_local_reserved_ports, or an outgoing connection may take one before the service starts.",
		newLo, newHi, human.Grouped(newSize), lo)
	if need > newSize {
		fmt.Fprintf(&b, " Even that is short of %s: reuse connections (keep-alive, pooling) as well.", human.Grouped(need))
	}
	e["port_range_recommended"] = newSize
	cur := a.r.Sysctl[hostinfo.LocalPortRange]
	a.add(report.Advice{
		ID: IDPortRange, Severity: Warning, Sysctl: hostinfo.LocalPortRange, Current: cur,
		Recommended: fmt.Sprintf("%d %d", newLo, newHi),
		Reason:      b.String(), Evidence: e,
	})
}

// closeWaitLeaks gives one warning per leak group (a process's leaked
// sockets on one local port, or to one backend), each with the advice for
// its kind of bug, and says how close the process is to its fd limit. No
// sysctl is involved: only the application can end CLOSE_WAIT.
func (a *advisor) closeWaitLeaks() {
	cw := &a.r.CloseWait
	for _, p := range cw.ByProcess {
		groups := p.Groups
		if len(groups) == 0 {
			// A report from before groups: the process is one group.
			groups = []report.LeakGroup{{Diagnosis: cmp.Or(p.Diagnosis, report.DiagNotClosed), Count: p.Count, OldestS: p.OldestS, Peers: p.Peers}}
		}
		for i, g := range groups {
			a.closeWaitGroup(p, g, i == 0, cw.ThresholdS)
		}
	}
}

// closeWaitGroup is the advice for one leak group; first says it is the
// process's largest, which also carries the fd-limit outlook.
func (a *advisor) closeWaitGroup(p report.LeakOwner, g report.LeakGroup, first bool, thresholdS float64) {
	who := "An unknown process (its owner could not be resolved)"
	name := "the application"
	if p.PID != 0 || p.Comm != "" {
		who = fmt.Sprintf("%s (pid %d", orUnknown(p.Comm), p.PID)
		if p.Cmdline != "" && p.Cmdline != p.Comm {
			who += ", " + safe.Quote(truncate(p.Cmdline, reasonCmdline))
		}
		who += ")"
		name = orUnknown(p.Comm)
	}
	lports := p.Lports
	if g.Lport != 0 {
		lports = []int{g.Lport}
	}
	ports := make([]string, len(lports))
	for i, l := range lports {
		ports[i] = strconv.Itoa(l)
	}
	where := ""
	if len(ports) > 0 {
		where = fmt.Sprintf(" on local port%s %s", human.Plural(len(ports)), strings.Join(ports, ", "))
	}
	peers := ""
	if len(g.Peers) > 0 {
		list := g.Peers[:min(len(g.Peers), reasonPeers)]
		peers = " (peers " + strings.Join(list, ", ")
		if len(g.Peers) > len(list) {
			peers += ", ..."
		}
		peers += ")"
	}
	oldest := "the oldest for " + human.Seconds(g.OldestS)
	if first && !p.Since.IsZero() {
		oldest += ", since " + p.Since.UTC().Format("2006-01-02 15:04:05 UTC")
		switch {
		case p.AgeSource == report.AgeCensus:
			oldest = "the oldest for at least " + human.Seconds(g.OldestS)
		case p.AgeSource == report.AgeTCPInfo && p.AgeLowerBound:
			oldest = "the oldest for at least " + human.Seconds(g.OldestS) + " (from tcp_info; TCP keepalive is on, and " +
				"each probe the peer answers restarts that count)"
		case p.AgeSource == report.AgeTCPInfo:
			oldest += " (from tcp_info: when the peer's FIN arrived)"
		}
	}
	n := human.Grouped(int64(g.Count))
	noSysctl := " No sysctl ends CLOSE_WAIT and keepalive settings do not help (the peer is not dead, it already closed)."
	var b strings.Builder
	var rec string
	switch g.Diagnosis {
	case report.DiagUnread:
		fmt.Fprintf(&b, "%s holds %s socket%s in CLOSE_WAIT%s%s that it never read to the end: ", who, n, human.Plural(g.Count), where, peers)
		if g.UnreadBytes > 0 {
			fmt.Fprintf(&b, "%s of them still hold data (%s bytes in all) and the peer's EOF in the receive queue (Recv-Q > 0), ",
				human.Grouped(int64(g.Unread)), human.Grouped(int64(g.UnreadBytes)))
		} else {
			fmt.Fprintf(&b, "%s of them still hold the peer's EOF unread (Recv-Q > 0), ", human.Grouped(int64(g.Unread)))
		}
		fmt.Fprintf(&b, "%s. The peers closed their side and %s stopped reading these connections, as a stuck or "+
			"deadlocked worker, or one waiting on something else, does; it never gets to the read that returns EOF "+
			"and so never to close(). Find where its threads wait (a thread dump: jstack, py-spy dump, gdb -p %d, "+
			"/proc/%d/task/*/stack).", oldest, name, p.PID, p.PID)
		b.WriteString(noSysctl)
		rec = fmt.Sprintf("fix %s: find why it stopped reading these connections (a stuck worker, a deadlock)", name)
	case report.DiagClientPool:
		backend := cmp.Or(g.Backend, "its backend")
		fmt.Fprintf(&b, "%s connect()ed to %s and holds %s of those connections in CLOSE_WAIT, %s: the backend "+
			"closed them first", who, backend, n, oldest)
		if g.IdleBeforeCloseS != nil && *g.IdleBeforeCloseS >= 1 {
			fmt.Fprintf(&b, ", after they had been idle for about %s (the backend's idle timeout, or a load "+
				"balancer's)", human.Seconds(*g.IdleBeforeCloseS))
		}
		fmt.Fprintf(&b, ", and the connection pool of %s never noticed: it neither reads nor closes them. "+
			"Make the pool evict idle connections before the backend does and validate a connection before "+
			"reuse (test on borrow, health checks), and close() one when a read returns EOF or an error.", name)
		b.WriteString(noSysctl)
		rec = fmt.Sprintf("fix the connection pool of %s to %s: evict idle connections before the backend does, close() on EOF", name, backend)
	default:
		fmt.Fprintf(&b, "%s holds %s socket%s in CLOSE_WAIT%s%s, %s, each read to the end (Recv-Q 0): the peer "+
			"closed its side, %s read the EOF and never called close().", who, n, human.Plural(g.Count), where, peers, oldest, name)
		b.WriteString(noSysctl + " Fix the application to close() a socket once a read returns EOF, including on error " +
			"paths and in connection pools.")
		rec = fmt.Sprintf("fix %s: close() sockets after reading EOF", name)
	}
	if first {
		b.WriteString(fdOutlook(p))
	}
	lp := lports
	if lp == nil {
		lp = []int{}
	}
	gp := g.Peers
	if gp == nil {
		gp = []string{}
	}
	e := map[string]any{
		"pid": p.PID, "comm": p.Comm, "cmdline": p.Cmdline, "count": g.Count, "process_count": p.Count,
		"oldest_s": g.OldestS, "lports": lp, "peers": gp, "threshold_s": thresholdS,
		"diagnosis": cmp.Or(g.Diagnosis, report.DiagNotClosed), "unread": g.Unread, "read_eof": g.ReadEOF,
		"unread_bytes": g.UnreadBytes,
	}
	if g.Role != "" {
		e["role"] = g.Role
	}
	if g.Backend != "" {
		e["backend"] = g.Backend
	}
	if g.IdleBeforeCloseS != nil {
		e["idle_before_close_s"] = *g.IdleBeforeCloseS
	}
	if p.AgeSource != "" {
		e["age_source"] = p.AgeSource
	}
	if p.FDs > 0 {
		e["fds"] = p.FDs
	}
	if p.FDLimit > 0 {
		e["fd_limit"] = p.FDLimit
	}
	if p.GrowthSource != "" {
		e["growth_per_min"] = p.GrowthPerMin
		e["growth_source"] = p.GrowthSource
	}
	if p.TimeToFDLimitS != nil {
		e["time_to_fd_limit_s"] = *p.TimeToFDLimitS
	}
	a.add(report.Advice{
		ID: IDCloseWaitLeak, Severity: Warning, Sysctl: "",
		Recommended: rec, Reason: b.String(), Evidence: e,
	})
}

// fdOutlook says how bad the leak will get: the process's open fds against
// RLIMIT_NOFILE, and at the measured growth, when it reaches the limit.
func fdOutlook(p report.LeakOwner) string {
	if p.FDs <= 0 {
		return ""
	}
	var b strings.Builder
	if p.FDLimit <= 0 {
		fmt.Fprintf(&b, " It has %s file descriptors open (its limit could not be read).", human.Grouped(int64(p.FDs)))
		return b.String()
	}
	fmt.Fprintf(&b, " It holds %s of %s allowed file descriptors (RLIMIT_NOFILE)", human.Grouped(int64(p.FDs)), human.Grouped(int64(p.FDLimit)))
	switch {
	case p.FDs >= p.FDLimit:
		b.WriteString(": it is at the limit, so accept(), connect() and open() fail with EMFILE now.")
		return b.String()
	case p.FDs*100 >= p.FDLimit*fdNearPercent:
		b.WriteString(": accept() will fail with EMFILE soon")
	}
	if p.GrowthSource == "" {
		b.WriteString(".")
		return b.String()
	}
	how := "while traced"
	if p.GrowthSource == report.AgeTCPInfo {
		how = "judging by the sockets' ages"
	}
	if p.GrowthPerMin <= 0 {
		fmt.Fprintf(&b, "; the leak did not grow %s.", how)
		return b.String()
	}
	rate := growthText(p.GrowthPerMin)
	unit := "sockets"
	if rate == "1" {
		unit = "socket"
	}
	fmt.Fprintf(&b, "; it gains %s CLOSE_WAIT %s a minute (%s)", rate, unit, how)
	if p.TimeToFDLimitS != nil {
		fmt.Fprintf(&b, ", which reaches the limit in about %s", human.Seconds(*p.TimeToFDLimitS))
	}
	b.WriteString(".")
	return b.String()
}

// growthText prints a rate: whole numbers from 10 up, one decimal below.
func growthText(v float64) string {
	if v >= 10 {
		return human.Grouped(int64(v + 0.5))
	}
	return strconv.FormatFloat(float64(int64(v*10+0.5))/10, 'f', -1, 64)
}

// maxTwBuckets: the table overflowed, so some closes got no mini-socket.
// Raise the limit; lowering it is never the advice. tcp_max_tw_buckets
// bounds every mini-socket (inet_twsk_alloc counts TIME_WAIT and FIN_WAIT2
// orphans alike), so both populations count against it.
func (a *advisor) maxTwBuckets() {
	overflow := a.r.Netstat["TCPTimeWaitOverflow"]
	if overflow == 0 {
		return
	}
	twPeak, orphanPeak := a.r.TimeWait.Peak, a.r.FinWait2Orphans.Peak
	cur := a.r.Sysctl[hostinfo.MaxTwBuckets]
	n, ok := a.s.Int(hostinfo.MaxTwBuckets)
	var rec int64
	if ok && n > 0 {
		rec = 2 * int64(n)
	} else {
		// Unknown limit: room for twice the mini-sockets seen, and no
		// less than the default of a host with a few GB of memory.
		rec = max(262144, 2*(twPeak+orphanPeak))
	}
	limit := ""
	if cur != "" {
		limit = "tcp_max_tw_buckets = " + cur + "; "
	}
	peaks := "peak seen " + human.Grouped(twPeak)
	if orphanPeak > 0 {
		peaks = fmt.Sprintf("peaks seen: %s TIME_WAIT, %s FIN_WAIT2 orphans, which count against it too",
			human.Grouped(twPeak), human.Grouped(orphanPeak))
	}
	reason := fmt.Sprintf("TCPTimeWaitOverflow grew by %s while tracing: the TIME_WAIT table was full (%s"+
		"%s), so %s closing connection%s skipped TIME_WAIT (or the FIN_WAIT2 orphan state), and a late packet of one of them "+
		"can be taken for part of a new connection on the same ports (the kernel logs \"time wait bucket "+
		"table overflow\"). Raise the limit to %d if memory allows (about %d bytes each: %s at most); never "+
		"lower it.", human.Grouped(int64(overflow)), limit, peaks, human.Grouped(int64(overflow)),
		human.Plural(int(overflow)), rec, twSockBytes, megabytes(rec*twSockBytes))
	a.add(report.Advice{
		ID: IDMaxTwBuckets, Severity: Warning, Sysctl: hostinfo.MaxTwBuckets, Current: cur,
		Recommended: strconv.FormatInt(rec, 10), Reason: reason,
		Evidence: map[string]any{
			"time_wait_overflow": overflow, "time_wait_peak": twPeak, "orphans_peak": orphanPeak,
			"tcp_max_tw_buckets": cur, "memory_bytes_at_recommended": rec * twSockBytes,
		},
	})
}

// finTimeout advises lowering tcp_fin_timeout on evidence of orphaned
// FIN_WAIT2 sockets, and only then. It reports whether that evidence
// exists, even when the timeout is already low enough to need no advice.
func (a *advisor) finTimeout() bool {
	o := &a.r.FinWait2Orphans
	expired, late := o.Ended.Expired, o.Ended.BecameTimeWait
	mostlyExpire := expired >= orphanExpiredMin && expired > late
	// A snapshot sees no orphan end, but how long those present have
	// waited: a FIN merely late arrives within milliseconds.
	overdue := a.r.Mode == report.ModeSnapshot && o.Current >= orphanPeakMin && o.WaitedP50S >= orphanOverdueS
	if !overdue && (o.Created == 0 || !(o.Current >= orphanPeakMin || mostlyExpire)) {
		return false
	}
	cur := a.r.Sysctl[hostinfo.FinTimeout]
	n, ok := a.s.Int(hostinfo.FinTimeout)
	if ok && n <= recommendedFinTimeout {
		// Already short: lowering further buys little, and the cause is
		// on the peers' side. The report's orphan section shows them.
		return true
	}
	held := "tcp_fin_timeout"
	if ok {
		held = fmt.Sprintf("tcp_fin_timeout = %d s", n)
	}
	advice := report.Advice{
		ID: IDFinTimeout, Severity: Warning, Sysctl: hostinfo.FinTimeout, Current: cur,
		Recommended: strconv.Itoa(recommendedFinTimeout),
	}
	if overdue && o.Created == 0 {
		advice.Reason = fmt.Sprintf("%s socket%s are orphaned in FIN_WAIT2 now: this host closed them and the peer has "+
			"not sent its FIN, half of them for %s or more (the longest %s), where a FIN that is merely late comes "+
			"within milliseconds. Each holds its connection's ports and memory for %s; %d s frees them sooner. "+
			"Also find out why the peers do not close (a load balancer or firewall dropping idle connections, a "+
			"hung peer). This does not shorten TIME_WAIT.",
			human.Grouped(o.Current), human.Plural(int(o.Current)), human.Seconds(o.WaitedP50S), human.Seconds(o.WaitedMaxS),
			held, recommendedFinTimeout)
		advice.Evidence = map[string]any{
			"orphans_now": o.Current, "orphans_waited_p50_s": o.WaitedP50S, "orphans_waited_max_s": o.WaitedMaxS,
			"orphans_client": o.ByRole.Client, "orphans_server": o.ByRole.Server, "tcp_fin_timeout": cur,
		}
		a.add(advice)
		return true
	}
	advice.Reason = fmt.Sprintf("%s socket%s were orphaned in FIN_WAIT2 (peak %s at once): this host closed them and "+
		"the peer never sent its FIN (%s ran out the timer, %s got it late). Each holds its connection's "+
		"ports and memory for %s; %d s frees them sooner. Also find out why the peers do not close (a load "+
		"balancer or firewall dropping idle connections, a hung peer). This does not shorten TIME_WAIT.",
		human.Grouped(int64(o.Created)), human.Plural(int(o.Created)), human.Grouped(o.Peak), human.Grouped(int64(expired)), human.Grouped(int64(late)),
		held, recommendedFinTimeout)
	advice.Evidence = map[string]any{
		"orphans_created": o.Created, "orphans_peak": o.Peak, "orphans_expired": expired,
		"orphans_became_time_wait": late, "orphans_client": o.ByRole.Client, "orphans_server": o.ByRole.Server,
		"tcp_fin_timeout": cur,
	}
	a.add(advice)
	return true
}

// serverTimeWait explains TIME_WAIT on the accepting side: harmless to
// the listening port, untouched by tcp_tw_reuse.
func (a *advisor) serverTimeWait() {
	tw := &a.r.TimeWait
	var peak int64
	var where []string
	for _, t := range tw.Top {
		if t.Role == "server" {
			peak += t.Peak
			where = append(where, hostPort(t.Addr, t.Port))
		}
	}
	if len(where) == 0 && tw.ByRole.Server > 0 {
		// No server destination in the top list: estimate its share of
		// the overall peak from the role counts.
		peak = tw.Peak * int64(tw.ByRole.Server) / int64(tw.ByRole.Client+tw.ByRole.Server)
	}
	// Destination peaks are reached at different times: their sum can
	// exceed the overall peak, never the truth.
	peak = min(peak, tw.Peak)
	buckets, bok := a.s.Int(hostinfo.MaxTwBuckets)
	large := peak >= serverTimeWaitPeak ||
		bok && buckets > 0 && peak*100 >= int64(buckets)*serverTimeWaitBucketsPercent
	if peak <= 0 || !large {
		return
	}
	at := "this host's accepting side"
	if len(where) > 0 {
		at = "this host's accepting side (" + strings.Join(where[:min(len(where), 3)], ", ") + ")"
	}
	limit := ""
	if bok {
		limit = fmt.Sprintf(" (%s)", human.Grouped(int64(buckets)))
	}
	reason := fmt.Sprintf("Up to %s TIME_WAIT sockets were on %s, because it closes connections before its "+
		"clients do. That is harmless to the listening port (such a socket holds no local port) and costs "+
		"about %d bytes each, %s, unless tcp_max_tw_buckets%s overflows. tcp_tw_reuse does nothing here: it "+
		"only affects outgoing connect(). To have fewer, let the clients close first: HTTP keep-alive, "+
		"connection pooling.", human.Grouped(peak), at, twSockBytes, megabytes(peak*twSockBytes), limit)
	e := map[string]any{
		"time_wait_peak_server": peak, "time_wait_server": tw.ByRole.Server, "time_wait_client": tw.ByRole.Client,
	}
	if len(where) > 0 {
		e["listen"] = where[0]
	}
	if bok {
		e["tcp_max_tw_buckets"] = buckets
	}
	a.add(report.Advice{
		ID: IDServerTimeWait, Severity: Info, Sysctl: "",
		Recommended: "nothing to tune; for fewer, let clients close first (keep-alive, pooling)",
		Reason:      reason, Evidence: e,
	})
}

// finTimeoutMyth corrects the seed article's advice before the user acts
// on it: tcp_fin_timeout does not shorten TIME_WAIT.
func (a *advisor) finTimeoutMyth() {
	tw := &a.r.TimeWait
	notable := tw.Peak >= notableTimeWaitPeak || a.timeWaitAdvice && tw.Peak >= notableWithAdvicePeak
	if !notable {
		return
	}
	cur := a.r.Sysctl[hostinfo.FinTimeout]
	reason := fmt.Sprintf("TIME_WAIT peaked at %s sockets. Lowering tcp_fin_timeout, as often advised, does "+
		"not shorten it: TIME_WAIT lasts %d s, fixed in the kernel (TCP_TIMEWAIT_LEN); tcp_fin_timeout only "+
		"limits orphaned FIN_WAIT2 sockets, and none worth acting on were seen.", human.Grouped(tw.Peak), timeWaitSeconds)
	if n, ok := a.s.Int(hostinfo.FinTimeout); ok && n < timeWaitSeconds {
		reason += fmt.Sprintf(" It is already %d s here, and TIME_WAIT still lasted %d s.", n, timeWaitSeconds)
	}
	e := map[string]any{"time_wait_peak": tw.Peak, "orphans_peak": a.r.FinWait2Orphans.Peak, "tcp_fin_timeout": cur}
	if tw.Lifetime.Count > 0 {
		// The measured proof: TIME_WAIT lived 60 s whatever the setting.
		e["time_wait_lifetime_p50_ms"] = tw.Lifetime.P50
	}
	a.add(report.Advice{
		ID: IDFinTimeoutMyth, Severity: Info, Sysctl: hostinfo.FinTimeout, Current: cur, Recommended: cur,
		Reason: reason, Evidence: e,
	})
}

// hostPort joins an address and port, bracketing IPv6.
func hostPort(addr string, port int) string {
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

// isLoopback says whether addr is a loopback address, the only kind
// tcp_tw_reuse = 2 reuses ports for. "other" (the destinations past the
// tracker's cap) is not.
func isLoopback(addr string) bool {
	a, err := netip.ParseAddr(addr)
	return err == nil && a.Unmap().IsLoopback()
}

func megabytes(b int64) string {
	if b < 1<<20 {
		return fmt.Sprintf("%d KB", (b+1023)>>10)
	}
	return fmt.Sprintf("%.0f MB", float64(b)/(1<<20))
}

// truncate shortens s to at most n bytes plus "...", without cutting a
// UTF-8 sequence in two.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// orUnknown is a process name for a reason or a recommendation, escaped
// (safe.Text): any process can name itself escape sequences, and a reason
// is printed to terminals. Evidence keeps the name as it is.
func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return safe.Text(s)
}
