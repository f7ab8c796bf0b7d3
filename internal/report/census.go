package report

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/human"
)

// roler tells accepted sockets from connect()ed ones by their local port.
// connect() never picks a port some socket is bound to (a listener's
// included, on any address), so a local port with a listener means the
// socket was accepted. Without a listener, a port in the ephemeral range
// was most likely picked by connect(), and one outside it was accepted on
// a port no longer listening.
type roler struct {
	listening map[uint16]bool
	lo, hi    int
	rangeOK   bool
}

func newRoler(in *Input) roler {
	r := roler{listening: make(map[uint16]bool, len(in.Listeners))}
	for _, l := range in.Listeners {
		r.listening[l.Port()] = true
	}
	r.lo, r.hi, r.rangeOK = portRange(in.Sysctl["net.ipv4.ip_local_port_range"])
	return r
}

// role returns "server", "client", or "" when neither the listeners nor
// the port range tell.
func (r roler) role(c *CensusSocket) string {
	p := int(c.Local.Port())
	switch {
	case c.Listening || r.listening[c.Local.Port()]:
		return "server"
	case !r.rangeOK:
		return ""
	case p >= r.lo && p <= r.hi:
		return "client"
	}
	return "server"
}

// stateName names a census socket's state as the report does: mini-sockets
// apart from full sockets.
func stateName(s *CensusSocket) string {
	switch {
	case s.Mini && s.State == event.TimeWait:
		return "TIME_WAIT"
	case s.Mini && s.State == event.FinWait2:
		return "FIN_WAIT2_ORPHAN"
	}
	return s.State.String()
}

// summarizeCensus fills what a census of every state shows: sockets per
// state, TIME_WAIT per destination and role, FIN_WAIT2 orphans and how long
// they have waited, and local-port headroom per destination. A snapshot's
// populations come from here; a trace keeps its own.
func summarizeCensus(r *Report, in *Input) {
	roles := newRoler(in)
	c := &r.Census
	c.Total = len(in.Sockets)
	type dkey struct {
		role string
		addr netip.AddrPort
	}
	type hkey struct {
		laddr netip.Addr
		dest  netip.AddrPort
	}
	tw := map[dkey]int64{}
	var twOrder []dkey
	head := map[hkey]*PortHeadroom{}
	var waited []float64
	var tws, orphans, fullFW2 int64
	var twRole, orphanRole ByRole
	finTimeout := 60.0
	if v, ok := parseSeconds(in.Sysctl["net.ipv4.tcp_fin_timeout"]); ok {
		finTimeout = v
	}
	for i := range in.Sockets {
		s := &in.Sockets[i]
		c.States[stateName(s)]++
		role := roles.role(s)
		switch {
		case s.Mini && s.State == event.TimeWait:
			tws++
			k := dkey{role, unmap(s.Remote)}
			if role == "server" {
				k.addr = unmap(s.Local)
				twRole.Server++
			} else {
				twRole.Client++
			}
			if tw[k] == 0 {
				twOrder = append(twOrder, k)
			}
			tw[k]++
		case s.Mini && s.State == event.FinWait2:
			orphans++
			if role == "server" {
				orphanRole.Server++
			} else {
				orphanRole.Client++
			}
			waited = append(waited, max(0, finTimeout-float64(s.ExpiresMs)/1000))
		case s.State == event.FinWait2:
			fullFW2++
		}
		// Ports connect() picked: the client side, in any state.
		if role != "client" || s.State == event.Listen {
			continue
		}
		hk := hkey{s.Local.Addr().Unmap(), unmap(s.Remote)}
		h := head[hk]
		if h == nil {
			h = &PortHeadroom{Laddr: addrString(hk.laddr), Addr: addrString(hk.dest.Addr()), Port: int(hk.dest.Port())}
			head[hk] = h
		}
		h.InUse++
		if s.Mini && s.State == event.TimeWait {
			h.TimeWait++
		}
	}
	if in.Mode != ModeSnapshot {
		return
	}
	r.TimeWait.Current, r.TimeWait.Peak, r.TimeWait.Preexisting = tws, tws, int(tws)
	r.TimeWait.ByRole = twRole
	for _, k := range twOrder {
		r.TimeWait.Top = append(r.TimeWait.Top, Destination{Role: k.role, Addr: addrString(k.addr.Addr()), Port: int(k.addr.Port()),
			Current: tw[k], Peak: tw[k]})
	}
	slices.SortStableFunc(r.TimeWait.Top, func(a, b Destination) int {
		return cmp.Or(cmp.Compare(b.Current, a.Current), strings.Compare(a.Addr, b.Addr), cmp.Compare(a.Port, b.Port))
	})
	r.TimeWait.Top = r.TimeWait.Top[:min(len(r.TimeWait.Top), in.TopN)]
	o := &r.FinWait2Orphans
	o.Current, o.Peak, o.Preexisting, o.FullSockets, o.ByRole = orphans, orphans, int(orphans), int(fullFW2), orphanRole
	if len(waited) > 0 {
		slices.Sort(waited)
		o.WaitedP50S, o.WaitedMaxS = round3(waited[len(waited)/2]), round3(waited[len(waited)-1])
	}
	size := r.PortExhaustion.PortRange.Size
	for _, h := range head {
		if size > 0 {
			h.Free = max(0, size-h.InUse)
		}
		r.PortExhaustion.Headroom = append(r.PortExhaustion.Headroom, *h)
	}
	slices.SortFunc(r.PortExhaustion.Headroom, func(a, b PortHeadroom) int {
		return cmp.Or(cmp.Compare(b.InUse, a.InUse), strings.Compare(a.Addr, b.Addr), cmp.Compare(a.Port, b.Port), strings.Compare(a.Laddr, b.Laddr))
	})
	r.PortExhaustion.Headroom = r.PortExhaustion.Headroom[:min(len(r.PortExhaustion.Headroom), in.TopN)]
}

// blindSpots says what the run could not see.
func blindSpots(r *Report, in *Input) []BlindSpot {
	out := []BlindSpot{}
	if !in.CensusOK {
		out = append(out, BlindSpot{ID: "census-failed", Reason: "The socket census (netlink sock_diag) failed: " +
			"CLOSE_WAIT sockets are known only from the events, without their owners, queues or tcp_info."})
	}
	unowned, uids := 0, map[uint32]bool{}
	for _, c := range in.CloseWait {
		if _, ok := in.Owners[c.Inode]; !ok && c.Inode != 0 {
			unowned++
			uids[c.UID] = true
		}
	}
	if unowned > 0 {
		ids := make([]string, 0, len(uids))
		for _, u := range slices.Sorted(maps.Keys(uids)) {
			ids = append(ids, fmt.Sprint(u))
		}
		reason := fmt.Sprintf("%s CLOSE_WAIT socket%s (socket uid %s) could not be matched to a process",
			human.Grouped(int64(unowned)), human.Plural(unowned), strings.Join(ids[:min(len(ids), 5)], ", "))
		id := "close-wait-owner-unknown"
		if in.OwnersUnreadable > 0 {
			id = "owners-unreadable"
			reason += fmt.Sprintf(": tcptrace may not read the file descriptors of %s process%s (other users'). "+
				"Run it as root, or with CAP_SYS_PTRACE (and CAP_DAC_READ_SEARCH), to name them, as ss -p would need too.",
				human.Grouped(int64(in.OwnersUnreadable)), human.PluralES(in.OwnersUnreadable))
		} else {
			reason += ": the process closed them or exited between the census and the scan of /proc, or /proc is " +
				"mounted with hidepid and hides it."
		}
		out = append(out, BlindSpot{ID: id, Count: unowned, Reason: reason})
	}
	if in.Mode == ModeSnapshot {
		out = append(out, BlindSpot{ID: "needs-trace", Reason: "A snapshot shows the sockets that exist now. " +
			"Only tracing measures rates and lifetimes: connections and TIME_WAIT created per second, how long " +
			"sockets stay in each state, connect() calls failing with EADDRNOTAVAIL, FIN_WAIT2 orphans that " +
			"expire or get their FIN late, and how fast a leak grows beyond what the sockets' ages show. " +
			"Run sudo tcptrace -d 60s for those."})
	}
	return out
}

func parseSeconds(v string) (float64, bool) {
	var n int
	if _, err := fmt.Sscan(strings.TrimSpace(v), &n); err != nil || n <= 0 {
		return 0, false
	}
	return float64(n), true
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }
