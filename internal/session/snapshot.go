package session

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/netns"
	"github.com/tcptrace/tcptrace/internal/owner"
	"github.com/tcptrace/tcptrace/internal/report"
)

// snapshotSource is `tcptrace --snapshot`: a stream of one census of every
// state of tcptrace's network namespace, with the CLOSE_WAIT sockets'
// tcp_info and owners, and no events. It loads no BPF and needs only what
// `ss -tp` needs: sock_diag of one's own namespace is open to every user,
// and reading other users' /proc/PID/fd takes CAP_SYS_PTRACE (or root);
// the report says which sockets that left without an owner.
type snapshotSource struct {
	opts   Options
	procfs *owner.Procfs
	// dumper, if set, is used instead of a new sock_diag socket in the
	// calling thread's namespace (tests, and a per-namespace census).
	dumper *census.Dumper
	ownNS  uint32
}

// run feeds in a whole snapshot stream: Start, one Census, End. It
// returns 0: there is no command.
func (s *snapshotSource) run(_ context.Context, in engine.Input) (int, error) {
	st, err := newStart(engine.ModeSnapshot, s.opts, s.procfs)
	if err != nil {
		return 0, err
	}
	if s.ownNS == 0 {
		if s.ownNS, err = netns.Own(); err != nil {
			return 0, err
		}
	}
	d := s.dumper
	if d == nil {
		if d, err = census.NewDumper(); err != nil {
			return 0, fmt.Errorf("opening sock_diag for the socket census (no privilege is needed for tcptrace's own "+
				"network namespace; if the kernel builds it as modules, load them: modprobe tcp_diag): %w", err)
		}
		defer d.Close()
	}
	began := time.Now()
	c := s.take(d)
	c.Took = time.Since(began)
	if c.Err != "" {
		return 0, fmt.Errorf("taking the socket census: %s", c.Err)
	}
	st.StartNs, st.Started = c.TakenNs, began
	st.Scope = report.Scope{NetNS: s.ownNS, Port: s.opts.Port, Family: report.FamilyName(s.opts.Family)}
	st.OwnNetNS = s.ownNS
	in.Start(st)
	in.Census(c)
	in.End(&engine.End{EndNs: c.TakenNs})
	return 0, nil
}

// take dumps every state, with tcp_info for the CLOSE_WAIT sockets only:
// the kernel fills tcp_info under each socket's lock, which for 100,000
// established sockets costs more than the rest of the dump (census
// benchmark), and only CLOSE_WAIT needs its age. The CLOSE_WAIT sockets
// come first, so that naming their owners (reading /proc) runs beside
// the dump of the other states: both are kernel work, and with 100,000
// sockets each takes about a quarter of a second.
func (s *snapshotSource) take(d *census.Dumper) *engine.Census {
	c := &engine.Census{TakenNs: monoNow(), NetNS: s.ownNS, States: census.AllStates}
	cw := census.Mask(event.CloseWait)
	socks, err := d.AppendQuery(nil, census.Query{States: cw, Family: s.opts.Family, Info: true})
	if err != nil {
		c.Err = err.Error()
		return c
	}
	socks = s.portOnly(socks)
	type named struct {
		owners     map[uint64]report.Owner
		unreadable int
	}
	done := make(chan named, 1)
	inodes := closeWaitInodes([]*engine.Census{{Sockets: socks}})
	go func() {
		o, n := resolveOwners(s.procfs, inodes)
		done <- named{o, n}
	}()
	closeWait := len(socks)
	socks, err = d.AppendQuery(socks, census.Query{States: census.AllStates &^ cw, Family: s.opts.Family})
	got := <-done
	if err != nil {
		c.Err = err.Error()
		return c
	}
	// A socket that entered CLOSE_WAIT between the two dumps is in the
	// second too, in its earlier state: the CLOSE_WAIT one stands.
	seen := make(map[[2]netip.AddrPort]bool, closeWait)
	for _, x := range socks[:closeWait] {
		seen[[2]netip.AddrPort{x.Local, x.Remote}] = true
	}
	rest := slices.DeleteFunc(s.portOnly(socks[closeWait:]), func(x census.Socket) bool {
		return x.Inode != 0 && seen[[2]netip.AddrPort{x.Local, x.Remote}]
	})
	c.Sockets = socks[:closeWait+len(rest)]
	c.Owners, c.OwnersUnreadable = got.owners, got.unreadable
	return c
}

// portOnly keeps the sockets of --port, if given.
func (s *snapshotSource) portOnly(socks []census.Socket) []census.Socket {
	p := uint16(s.opts.Port)
	if p == 0 {
		return socks
	}
	return slices.DeleteFunc(socks, func(x census.Socket) bool { return x.Local.Port() != p && x.Remote.Port() != p })
}
