package session

import (
	"fmt"
	"io"
	"maps"
	"time"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/netns"
)

// With --all-netns, namespaces are looked for this often, and each one's
// sysctls and counters read again this often.
const (
	rescanEvery = 5 * time.Second
	factsEvery  = 30 * time.Second
)

// lateSeedStates is the first census of a namespace found after tracing
// began: its listeners, but no mini-sockets counted as predating tracing
// (they were born while tracing).
var lateSeedStates = census.Mask(event.Listen, event.FinWait2, event.CloseWait)

// fleet follows every network namespace of the host (--all-netns): it
// finds them, keeps a sock_diag socket in each, and reads each one's own
// sysctls and counters. tcptrace's own namespace is censused by the
// liveSource as always; fleet only describes it.
type fleet struct {
	own      uint32
	stderr   io.Writer
	procRoot string
	runNetNS string
	nss      map[uint32]*fleetNS
	scanned  time.Time
	warned   map[string]bool
}

type fleetNS struct {
	ns      netns.Namespace
	dumper  *census.Dumper // nil for tcptrace's own, or when it could not be entered
	factsAt time.Time
}

func newFleet(own uint32, stderr io.Writer) *fleet {
	return &fleet{own: own, stderr: stderr, procRoot: "/proc", runNetNS: "/run/netns",
		nss: map[uint32]*fleetNS{}, warned: map[string]bool{}}
}

// warn prints a problem once per kind: a host with hundreds of
// namespaces must not print hundreds of lines.
func (f *fleet) warn(kind string, err error) {
	if f.warned[kind] {
		return
	}
	f.warned[kind] = true
	fmt.Fprintf(f.stderr, "tcptrace: warning: %v\n", err)
}

// round is what one pass over the namespaces produced, in stream order:
// namespace records first, then censuses.
type round struct {
	namespaces []*engine.Namespace
	censuses   []*engine.Census
}

// scan looks for namespaces if it is time (or force), describing new
// ones (with a first census taken with seed) and gone ones.
func (f *fleet) scan(now time.Time, force bool, seed census.StateMask, r *round) {
	if !force && now.Sub(f.scanned) < rescanEvery {
		return
	}
	f.scanned = now
	found, err := netns.Scan(f.procRoot, f.runNetNS)
	if err != nil {
		f.warn("scan", err)
		return
	}
	seen := make(map[uint32]bool, len(found))
	for _, n := range found {
		seen[n.Inode] = true
		e := f.nss[n.Inode]
		if e != nil {
			if n.Identity != e.ns.Identity && n.Identity.PID != 0 {
				// Its lowest process changed (the first one exited).
				e.ns = n
			}
			continue
		}
		e = &fleetNS{ns: n}
		if n.Inode != f.own {
			if e.dumper, err = netns.OpenDumper(n.Path); netns.Vanished(err) {
				continue // its process exited meanwhile: the next scan tells
			} else if err != nil {
				f.warn("enter", fmt.Errorf("%w; the CLOSE_WAIT owners and sysctls of other namespaces are not known", err))
			}
		}
		f.nss[n.Inode] = e
		r.namespaces = append(r.namespaces, f.facts(e, now))
		if e.dumper == nil {
			continue
		}
		r.censuses = append(r.censuses, take(e.dumper, n.Inode, seed))
	}
	for ino, e := range f.nss {
		if seen[ino] || ino == f.own {
			continue
		}
		if e.dumper != nil {
			_ = e.dumper.Close() // it would keep the namespace alive
		}
		delete(f.nss, ino)
		r.namespaces = append(r.namespaces, &engine.Namespace{TakenNs: monoNow(), NetNS: ino, Gone: true})
	}
}

// facts reads a namespace's identity, sysctls and counters.
func (f *fleet) facts(e *fleetNS, now time.Time) *engine.Namespace {
	e.factsAt = now
	rec := &engine.Namespace{TakenNs: monoNow(), NetNS: e.ns.Inode, Identity: e.ns.Identity}
	facts, err := netns.ReadFacts(e.ns.Path)
	if err != nil {
		rec.Err = err.Error()
		if !netns.Vanished(err) {
			f.warn("facts", err)
		}
		return rec
	}
	rec.Sysctl, rec.Netstat = maps.Clone(facts.Sysctl), maps.Clone(facts.Netstat)
	return rec
}

// refresh reads anew the facts of namespaces not read for a while (all
// with force).
func (f *fleet) refresh(now time.Time, force bool, r *round) {
	for _, e := range f.nss {
		if force || now.Sub(e.factsAt) >= factsEvery {
			r.namespaces = append(r.namespaces, f.facts(e, now))
		}
	}
}

// census takes a census of every namespace but tcptrace's own.
func (f *fleet) census(states census.StateMask, r *round) {
	for ino, e := range f.nss {
		if e.dumper != nil {
			r.censuses = append(r.censuses, take(e.dumper, ino, states))
		}
	}
}

func (f *fleet) close() {
	for _, e := range f.nss {
		if e.dumper != nil {
			_ = e.dumper.Close()
		}
	}
}

// take runs one census with d of namespace ino.
func take(d *census.Dumper, ino uint32, states census.StateMask) *engine.Census {
	// The time is taken before the dump: a socket born during the dump
	// may be missing from it, and must count as younger than the census.
	c := &engine.Census{TakenNs: monoNow(), NetNS: ino, States: states}
	// tcp_info dates the CLOSE_WAIT sockets that predate tracing; the
	// kernel sends it for full sockets only, and these states have few.
	socks, err := d.AppendQuery(nil, census.Query{States: states, Info: true})
	if err != nil {
		c.Err = err.Error()
		return c
	}
	c.Sockets = socks
	return c
}

// takenNs is when the round's last census began: it is applied once the
// stream has caught up with that.
func (r *round) takenNs() uint64 {
	var t uint64
	for _, c := range r.censuses {
		t = max(t, c.TakenNs)
	}
	return t
}

// apply feeds a round to in, in order.
func (r *round) apply(in engine.Input) {
	for _, n := range r.namespaces {
		in.Namespace(n)
	}
	for _, c := range r.censuses {
		in.Census(c)
	}
}
