// Package eventtest builds synthetic streams of kernel records, the way
// the probe decodes them, for the tests of the packages that consume them
// (tracker, engine, capture). Only tests import it.
package eventtest

import (
	"net/netip"

	"github.com/tcptrace/tcptrace/internal/event"
)

// Ms is a millisecond in event time (nanoseconds).
const Ms = uint64(1_000_000)

// NetNS is the network namespace inode of every record a Seq builds.
const NetNS = 1

// Seq accumulates records; Evs holds them in order.
type Seq struct {
	Evs []event.Event
	ts  uint64
}

// At sets the timestamp of the records that follow.
func (s *Seq) At(ts uint64) *Seq { s.ts = ts; return s }

// Tr appends a transition of socket sock, run by pid/comm.
func (s *Seq) Tr(sock uint64, pid uint32, comm string, local, remote string, old, new event.State) *Seq {
	e := event.Event{Kind: event.Transition, TimeNs: s.ts, Sock: sock, PID: pid, Family: event.IPv4,
		NetNS: NetNS, OldState: old, NewState: new,
		Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}
	copy(e.Comm[:], comm)
	if old == event.SynSent && new == event.Close && e.Local.Port() == 0 {
		e.Flags = event.FlagConnectFailed
	}
	s.Evs = append(s.Evs, e)
	return s
}

// TW appends a timer record of mini-socket sock in substate sub; a
// TimerStart arms it for 60 s (TIME_WAIT) or 60 s at HZ 250.
func (s *Seq) TW(kind event.Kind, sock uint64, sub event.State, local, remote string) *Seq {
	e := event.Event{Kind: kind, TimeNs: s.ts, Sock: sock, Family: event.IPv4, NetNS: NetNS, NewState: sub,
		Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}
	if kind == event.TimerStart {
		e.ExpiresTicks = 15000
		if sub == event.FinWait2 {
			e.ExpiresTicks = 250 * 60
		}
	}
	s.Evs = append(s.Evs, e)
	return s
}

// Connection appends one connection n from client port cport on 10.0.0.1
// to the server 10.0.0.2:80, with the given side closing first, starting
// at ts: the closer's mini-socket is 5000+n, its full sockets 1000+2n
// (client) and 1001+2n (server).
func (s *Seq) Connection(ts uint64, n uint64, cport int, serverCloses bool) *Seq {
	c, sv := 1000+n*2, 1001+n*2
	tw := 5000 + n
	cl := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(cport)).String()
	srv := "10.0.0.2:80"
	s.At(ts).Tr(c, 10, "client", "10.0.0.1:0", srv, event.Close, event.SynSent)
	s.At(ts+1*Ms).Tr(c, 10, "client", cl, srv, event.SynSent, event.Established)
	s.At(ts+1*Ms).Tr(sv, 10, "client", srv, "0.0.0.0:0", event.Listen, event.SynRecv)
	s.At(ts+1*Ms).Tr(sv, 10, "client", srv, cl, event.SynRecv, event.Established)
	if serverCloses {
		s.At(ts+5*Ms).Tr(sv, 20, "server", srv, cl, event.Established, event.FinWait1)
		s.At(ts+5*Ms).Tr(c, 20, "server", cl, srv, event.Established, event.CloseWait)
		s.At(ts+6*Ms).Tr(c, 10, "client", cl, srv, event.CloseWait, event.LastAck)
		s.At(ts+6*Ms).Tr(sv, 10, "client", srv, cl, event.FinWait1, event.FinWait2)
		s.At(ts+7*Ms).TW(event.TimerStart, tw, event.TimeWait, srv, cl)
		s.At(ts+7*Ms).Tr(sv, 10, "client", "10.0.0.2:80", cl, event.FinWait2, event.Close)
		s.At(ts+7*Ms).Tr(c, 10, "client", cl, srv, event.LastAck, event.Close)
	} else {
		s.At(ts+5*Ms).Tr(c, 10, "client", cl, srv, event.Established, event.FinWait1)
		s.At(ts+5*Ms).Tr(sv, 10, "client", srv, cl, event.Established, event.CloseWait)
		s.At(ts+6*Ms).Tr(sv, 20, "server", srv, cl, event.CloseWait, event.LastAck)
		s.At(ts+6*Ms).Tr(c, 20, "server", cl, srv, event.FinWait1, event.FinWait2)
		s.At(ts+7*Ms).TW(event.TimerStart, tw, event.TimeWait, cl, srv)
		s.At(ts+7*Ms).Tr(c, 20, "server", cl, srv, event.FinWait2, event.Close)
		s.At(ts+7*Ms).Tr(sv, 20, "server", srv, cl, event.LastAck, event.Close)
	}
	return s
}
