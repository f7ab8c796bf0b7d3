package session

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/tcptrace/tcptrace/internal/advisor"
	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/hostinfo"
	"github.com/tcptrace/tcptrace/internal/owner"
	"github.com/tcptrace/tcptrace/internal/render"
	"github.com/tcptrace/tcptrace/internal/report"
)

type sockKey struct{ local, remote netip.AddrPort }

// closeWaitCensus keeps, from periodic sock_diag dumps of CLOSE_WAIT only,
// when each socket was first seen, and the latest list. Sockets that
// predate tracing, or that the events missed, get their age from it.
//
// It also lists the FIN_WAIT2 orphan mini-sockets: an orphan that receives
// its FIN can turn into TIME_WAIT without any record (see
// tracker.PromoteOrphans), and the census is how tcptrace notices.
type closeWaitCensus struct {
	dumper  *census.Dumper
	mu      sync.Mutex
	first   map[sockKey]uint64
	latest  []census.Socket
	orphans map[sockKey]bool
	fullFW2 int
	takenNs uint64
	err     error
}

func (c *closeWaitCensus) take() {
	// The time is taken before the dump: an orphan born during the dump
	// may be missing from it, and must count as younger than the census.
	now := monoNow()
	socks, err := c.dumper.Dump(census.Mask(event.CloseWait, event.FinWait2))
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.err = err
		return
	}
	seen := make(map[sockKey]uint64, len(socks))
	cw := socks[:0:0]
	orphans := map[sockKey]bool{}
	full := 0
	for _, s := range socks {
		k := sockKey{s.Local, s.Remote}
		if s.State == event.FinWait2 {
			if s.Timer == census.TimerTimeWait {
				orphans[k] = true
			} else {
				full++
			}
			continue
		}
		cw = append(cw, s)
		if t, ok := c.first[k]; ok {
			seen[k] = t
		} else {
			seen[k] = now
		}
	}
	c.first, c.latest, c.orphans, c.takenNs, c.err = seen, cw, orphans, now, nil
	c.fullFW2 = full
}

// reconcile tells the tracker which orphans the latest census no longer
// shows. It runs on the reader's goroutine, which owns the tracker.
func (c *closeWaitCensus) reconcile(t *trace, lastNs *uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.takenNs == *lastNs {
		return
	}
	*lastNs = c.takenNs
	t.tracker.PromoteOrphans(t.ownNS, c.takenNs, func(l, r netip.AddrPort) bool {
		return c.orphans[sockKey{l, r}]
	})
}

func (c *closeWaitCensus) current() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.latest), c.err
}

func runReport(ctx context.Context, opts Options, stdout, stderr io.Writer) error {
	procfs := os.DirFS("/proc")
	// Host facts first: they describe the namespace tcptrace runs in,
	// which is the one traced unless --all-netns.
	sysctls, err := hostinfo.ReadSysctls(procfs)
	if err != nil {
		return fmt.Errorf("reading sysctls: %w", err)
	}
	netstatBefore, nsErr := hostinfo.ReadNetstat(procfs)
	release, _ := hostinfo.KernelRelease(procfs)

	t := &trace{opts: opts, stderr: stderr}
	if err := t.open(nil); err != nil {
		return err
	}
	defer t.probe.Close()

	// Census right after attaching, so nothing falls in between.
	dumper, err := census.NewDumper()
	if err != nil {
		return fmt.Errorf("opening sock_diag for the socket census: %w", err)
	}
	defer dumper.Close()
	cw := &closeWaitCensus{dumper: dumper, first: map[sockKey]uint64{}}
	preTW, preOrphans, err := t.seedFromCensus(dumper, cw)
	if err != nil {
		return err
	}

	cmdOut := io.Writer(stdout)
	if opts.JSON {
		cmdOut = stderr
	}
	if err := t.startCommand(cmdOut); err != nil {
		return err
	}

	// The periodic census runs beside the reader, so a slow dump never
	// holds up the ring buffer.
	interval := opts.Interval
	if interval <= 0 {
		interval = time.Second
	}
	stopCensus := make(chan struct{})
	var censusDone sync.WaitGroup
	censusDone.Go(func() {
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-stopCensus:
				return
			case <-tk.C:
				cw.take()
			}
		}
	})

	var reconciled uint64
	status := func(nowNs uint64) {
		cw.reconcile(t, &reconciled)
		if opts.Quiet {
			return
		}
		loss, _ := t.probe.Loss()
		drops := loss.Total()
		cwNow, cwErr := cw.current()
		b := t.tracker.Brief(nowNs, uint64(opts.CloseWaitThreshold))
		if cwErr != nil {
			cwNow = int(b.CloseWait)
		}
		fmt.Fprintln(stderr, render.StatusLine(time.Duration(nowNs-t.startNs), b, cwNow, drops))
	}
	loopErr := t.loop(ctx, status, nil)
	close(stopCensus)
	censusDone.Wait()
	if loopErr != nil {
		return loopErr
	}
	endNs := monoNow()

	// The final census is the truth about which CLOSE_WAIT sockets are
	// still open; their inodes name the processes that hold them.
	cw.take()
	cw.reconcile(t, &reconciled)
	in := report.Input{
		Stats: t.tracker.Stats(), StartNs: t.startNs, EndNs: endNs, Started: t.started,
		Version: Version, Kernel: hostinfo.ShortRelease(release),
		Scope: report.Scope{AllNetNS: opts.AllNetNS, PID: opts.PID, Port: opts.Port,
			Family: report.FamilyName(opts.Family)},
		Sysctl: sysctls, Threshold: opts.CloseWaitThreshold,
		PreexistingTimeWait: preTW, PreexistingOrphans: preOrphans, OwnNetNS: t.ownNS,
		FullFinWait2: -1,
	}
	if !opts.AllNetNS {
		in.Scope.NetNS = t.ownNS
	}
	if l, err := t.probe.Loss(); err == nil {
		in.Loss = report.Loss{RingFull: l.RingFull, Recursion: l.Transitions, Rescued: l.Rescued,
			TimerMisses: l.TimerMisses, Written: l.Written, Read: l.Read}
	}
	if nsErr == nil {
		if after, err := hostinfo.ReadNetstat(procfs); err == nil {
			in.Netstat = after.Delta(netstatBefore)
		}
	}
	cw.mu.Lock()
	if cw.err == nil {
		in.CensusOK = true
		if !opts.AllNetNS {
			in.FullFinWait2 = cw.fullFW2
		}
		var inodes []uint64
		for _, s := range cw.latest {
			in.CloseWait = append(in.CloseWait, report.CensusSocket{Local: s.Local, Remote: s.Remote,
				Inode: s.Inode, FirstSeenNs: cw.first[sockKey{s.Local, s.Remote}]})
			if s.Inode != 0 {
				inodes = append(inodes, s.Inode)
			}
		}
		in.Owners = owners(procfs, inodes)
	} else {
		fmt.Fprintf(stderr, "tcptrace: warning: the CLOSE_WAIT census failed (%v); leaks are reported from events only, without owners\n", cw.err)
	}
	cw.mu.Unlock()
	code := t.commandExit()
	if t.cmd != nil {
		in.Command = &report.Command{Argv: opts.Command, ExitCode: code}
	}

	r := report.Build(in)
	r.Recommendations = advisor.Advise(r)
	if opts.JSON {
		err = render.WriteReportJSON(stdout, r)
	} else {
		err = render.WriteReportText(stdout, r)
	}
	if err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// seedFromCensus tells the tracker about listeners and counts the
// mini-sockets that predate tracing.
func (t *trace) seedFromCensus(d *census.Dumper, cw *closeWaitCensus) (timeWait, orphans int, err error) {
	socks, err := d.Dump(census.Mask(event.Listen, event.TimeWait, event.FinWait2))
	if err != nil {
		return 0, 0, fmt.Errorf("taking the socket census: %w", err)
	}
	for _, s := range socks {
		switch {
		case s.State == event.Listen:
			t.tracker.ObserveListener(t.ownNS, s.Local.Port(), 0)
		case s.State == event.TimeWait:
			timeWait++
		case s.State == event.FinWait2 && s.Timer == census.TimerTimeWait:
			orphans++
		}
	}
	cw.take()
	return timeWait, orphans, nil
}

func owners(procfs fs.FS, inodes []uint64) map[uint64]report.Owner {
	out := map[uint64]report.Owner{}
	if len(inodes) == 0 {
		return out
	}
	found, err := owner.Resolve(procfs, inodes)
	if err != nil {
		return out
	}
	for ino, o := range found {
		out[ino] = report.Owner{PID: o.PID, Comm: o.Comm, Cmdline: o.Cmdline, Holders: o.Holders}
	}
	return out
}
