package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/hostinfo"
	"github.com/tcptrace/tcptrace/internal/netns"
	"github.com/tcptrace/tcptrace/internal/probe"
	"github.com/tcptrace/tcptrace/internal/report"
)

// commandGrace is how long tracing goes on after COMMAND exits: long
// enough for a delayed ACK (40 ms, at most 200 ms) to close the last
// connections it closed.
const commandGrace = 300 * time.Millisecond

// ownerScanEvery bounds how often the census reads /proc to name the
// holders of CLOSE_WAIT sockets while tracing: a scan reads every
// process's fd table.
const ownerScanEvery = 5 * time.Second

// Census states: the first census also finds the listeners and the
// mini-sockets that predate tracing; the periodic one follows CLOSE_WAIT
// sockets and FIN_WAIT2 orphans.
var (
	seedStates     = census.Mask(event.Listen, event.TimeWait, event.FinWait2, event.CloseWait)
	periodicStates = census.Mask(event.CloseWait, event.FinWait2)
)

// liveSource traces the running kernel: the probe, a census beside it,
// the host facts, and the user's command. It feeds an engine.Input from
// the goroutine that reads the probe.
type liveSource struct {
	opts   Options
	stderr io.Writer
	procfs fs.FS
	// The command's standard input, output and error.
	cmdIn          io.Reader
	cmdOut, cmdErr io.Writer
	// cmdGroup runs the command in a process group of its own, for
	// interruptCommand: with the live view holding the terminal, Ctrl-C
	// reaches no one, so tcptrace passes it on to the whole group, as the
	// terminal would have.
	cmdGroup bool

	// closeWaitOwners lists the CLOSE_WAIT sockets (by inode) at least
	// minAge old whose holders the engine does not know yet.
	closeWaitOwners func(nowNs uint64, minAge time.Duration) []uint64

	probe  *probe.Probe
	dumper *census.Dumper
	ownNS  uint32
	// fleet follows the other namespaces with --all-netns.
	fleet *fleet

	cmd     *exec.Cmd
	proc    atomic.Pointer[os.Process] // cmd's, for interruptCommand
	cmdDone chan struct{}
	cmdWait error
}

// monoNow reads CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns().
func monoNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// run traces until ctx is done, the duration elapses or the command
// exits, feeding in; it returns the command's exit status.
func (s *liveSource) run(ctx context.Context, in engine.Input) (int, error) {
	start, err := s.open()
	if err != nil {
		return 0, err
	}
	defer s.close()
	in.Start(start)
	// The first census right after attaching, so nothing falls in between.
	seed := s.take(seedStates)
	if seed.Err != "" {
		return 0, fmt.Errorf("taking the socket census: %s", seed.Err)
	}
	in.Census(seed)
	if s.fleet != nil {
		r := &round{}
		s.fleet.scan(time.Now(), true, seedStates, r)
		r.apply(in)
	}
	// Ready once the start-up census is in, too: traffic a test makes
	// after this cannot race with that census' dump.
	if s.opts.ReadyFile != "" {
		if err := os.WriteFile(s.opts.ReadyFile, []byte("ready\n"), 0o644); err != nil {
			return 0, fmt.Errorf("writing --ready-file: %w", err)
		}
	}
	if err := s.startCommand(); err != nil {
		return 0, err
	}

	c := newCensusLoop(s)
	loopErr := s.loop(ctx, in, c)
	c.stop()
	if loopErr != nil {
		return 0, loopErr
	}
	endNs := monoNow()
	// The final census is the truth about which CLOSE_WAIT sockets are
	// still open; their inodes name the processes that hold them.
	final := &round{censuses: []*engine.Census{s.take(periodicStates)}}
	if s.fleet != nil {
		s.fleet.refresh(time.Now(), true, final)
		s.fleet.census(periodicStates, final)
	}
	last := final.censuses[len(final.censuses)-1]
	last.Owners, last.OwnersUnreadable = resolveOwners(s.procfs, closeWaitInodes(final.censuses))
	final.apply(in)
	code := s.commandExit()
	end := &engine.End{EndNs: endNs, Loss: s.loss(), Netstat: s.netstat()}
	if s.cmd != nil {
		end.Command = &report.Command{Argv: s.opts.Command, ExitCode: code}
	}
	in.End(end)
	return code, nil
}

// open reads the host facts, loads the probe and opens the census.
func (s *liveSource) open() (*engine.Start, error) {
	// Host facts first: they describe the namespace tcptrace runs in,
	// which is the one traced unless --all-netns.
	st, err := newStart(engine.ModeTrace, s.opts, s.procfs)
	if err != nil {
		return nil, err
	}
	if s.ownNS, err = netns.Own(); err != nil {
		return nil, err
	}
	cfg := probe.Config{
		PID: uint32(s.opts.PID), Port: uint16(s.opts.Port), Family: s.opts.Family,
		RingBytes: s.opts.RingBytes, Hooks: s.opts.Hooks,
		Skip: s.opts.DevSkip, Idle: s.opts.DevIdle,
	}
	if !s.opts.AllNetNS {
		cfg.NetNS = s.ownNS
	}
	if s.opts.Events {
		cfg.Poll = 50 * time.Millisecond // a live stream should feel live
	}
	before := s.netstat() // before the probe, like the rest of the facts
	if s.probe, err = probe.Open(cfg); err != nil {
		return nil, err
	}
	if s.dumper, err = census.NewDumper(); err != nil {
		s.close()
		return nil, fmt.Errorf("opening sock_diag for the socket census: %w", err)
	}
	if s.opts.AllNetNS {
		s.fleet = newFleet(s.ownNS, s.stderr)
	}
	st.Started = time.Now()
	st.StartNs = monoNow()
	st.HZ, st.Hooks = s.probe.HZ(), s.probe.Hooks()
	st.Interval = s.opts.Interval
	st.Scope = report.Scope{AllNetNS: s.opts.AllNetNS, PID: s.opts.PID, Port: s.opts.Port,
		Family: report.FamilyName(s.opts.Family)}
	st.OwnNetNS = s.ownNS
	st.Netstat = before
	st.Command = s.opts.Command
	if !s.opts.AllNetNS {
		st.Scope.NetNS = s.ownNS
	}
	return st, nil
}

func (s *liveSource) close() {
	if s.fleet != nil {
		s.fleet.close()
	}
	if s.dumper != nil {
		_ = s.dumper.Close()
	}
	if s.probe != nil {
		_ = s.probe.Close()
	}
}

// netstat reads the kernel's TCP counters; nil when they cannot be read
// (then the report has no counter deltas).
func (s *liveSource) netstat() map[string]uint64 {
	n, err := hostinfo.ReadNetstat(s.procfs)
	if err != nil {
		return nil
	}
	return n
}

// loss reads the probe's loss counters.
func (s *liveSource) loss() report.Loss {
	l, err := s.probe.Loss()
	if err != nil {
		return report.Loss{}
	}
	return report.Loss{RingFull: l.RingFull, RingFullByCPU: l.RingFullByCPU, Recursion: l.Transitions, Rescued: l.Rescued,
		TimerMisses: l.TimerMisses, Written: l.Written, Read: l.Read}
}

// take runs one census of tcptrace's own namespace.
func (s *liveSource) take(states census.StateMask) *engine.Census {
	return take(s.dumper, s.ownNS, states)
}

func closeWaitInodes(cs []*engine.Census) []uint64 {
	var out []uint64
	for _, c := range cs {
		for _, s := range c.Sockets {
			if s.State == event.CloseWait && s.Inode != 0 {
				out = append(out, s.Inode)
			}
		}
	}
	return out
}

// loop reads the probe until ctx is done, the duration elapses or the
// command exits, then drains what the kernel already wrote.
func (s *liveSource) loop(ctx context.Context, in engine.Input, c *censusLoop) error {
	if s.opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.Duration)
		defer cancel()
	}
	if s.cmdDone != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-s.cmdDone:
				// The kernel goes on closing the command's connections
				// after it exits (FINs, delayed ACKs): let it finish.
				select {
				case <-time.After(commandGrace):
				case <-ctx.Done():
				}
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	// Stop from another goroutine: Poll then returns what is left, then
	// ErrClosed, so nothing already written is lost.
	stopped := make(chan struct{})
	go func() {
		<-ctx.Done()
		_ = s.probe.Stop()
		close(stopped)
	}()
	defer func() { <-stopped }()

	next := time.Now().Add(s.opts.Interval)
	feed := in.Event
	var pending *round
	for {
		// A census is applied once the stream has caught up with it:
		// every record written before the dump began has been read.
		if pending == nil {
			pending = c.result()
		}
		// Poll hands over every record waiting, in one batch: the tick
		// and the census run between batches, never per record.
		_, err := s.probe.Poll(feed)
		if pending != nil && s.probe.Through() >= pending.takenNs() {
			pending.apply(in)
			pending = nil
		}
		switch {
		case err == nil:
		case errors.Is(err, probe.ErrIdle):
			// Settle only what the merged stream is complete up to: a
			// timer cancel whose follow-up record is still held back in
			// another pass is not a kill.
			in.Flush(s.probe.Through())
		case errors.Is(err, probe.ErrClosed):
			in.Flush(^uint64(0))
			return nil
		default:
			return err
		}
		if now := time.Now(); !now.Before(next) {
			next = now.Add(s.opts.Interval)
			nowNs := monoNow()
			in.Tick(&engine.Tick{NowNs: nowNs, Loss: s.loss(), Netstat: s.netstat()})
			if s.closeWaitOwners != nil {
				c.want(s.closeWaitOwners(nowNs, s.opts.CloseWaitThreshold))
			}
		}
	}
}

// censusLoop takes the periodic census beside the reader, so a slow dump
// never holds up the ring buffer, and names the holders of the CLOSE_WAIT
// sockets the engine asks about.
type censusLoop struct {
	src     *liveSource
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	latest  *round
	wanted  []uint64
	scanned time.Time
	// The other namespaces' part of a round (--all-netns) runs no sooner
	// than fleetGap after the last one ended: four times as long as that
	// one took, so that censuses of many namespaces take at most a fifth
	// of a CPU, and at least every interval.
	fleetAt  time.Time
	fleetGap time.Duration
}

func newCensusLoop(s *liveSource) *censusLoop {
	c := &censusLoop{src: s, done: make(chan struct{})}
	c.wg.Go(func() {
		tk := time.NewTicker(s.opts.Interval)
		defer tk.Stop()
		for {
			select {
			case <-c.done:
				return
			case <-tk.C:
				c.takeOne()
			}
		}
	})
	return c
}

func (c *censusLoop) takeOne() {
	res := &round{censuses: []*engine.Census{c.src.take(periodicStates)}}
	if f := c.src.fleet; f != nil && time.Since(c.fleetAt) >= c.fleetGap {
		t := time.Now()
		f.scan(t, false, lateSeedStates, res)
		f.refresh(t, false, res)
		f.census(periodicStates, res)
		c.fleetAt = time.Now()
		c.fleetGap = 4 * c.fleetAt.Sub(t)
	}
	c.mu.Lock()
	want := c.wanted
	due := len(want) > 0 && time.Since(c.scanned) >= ownerScanEvery
	if due {
		c.wanted, c.scanned = nil, time.Now()
	}
	c.mu.Unlock()
	if last := res.censuses[len(res.censuses)-1]; due && last.Err == "" {
		last.Owners, last.OwnersUnreadable = resolveOwners(c.src.procfs, want)
	}
	c.mu.Lock()
	if c.latest != nil {
		// Not handed over yet: keep its namespace records (a namespace
		// found or gone must not be missed) and its censuses, in order.
		res.namespaces = append(c.latest.namespaces, res.namespaces...)
		res.censuses = append(c.latest.censuses, res.censuses...)
	}
	c.latest = res
	c.mu.Unlock()
}

// result hands over the rounds not yet handed over, or nil.
func (c *censusLoop) result() *round {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.latest
	c.latest = nil
	return r
}

// want asks for the owners of these inodes at the next owner scan.
func (c *censusLoop) want(inodes []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wanted = slices.Clone(inodes)
}

func (c *censusLoop) stop() {
	close(c.done)
	c.wg.Wait()
}

// startCommand runs the user's command with its output on cmdOut.
func (s *liveSource) startCommand() error {
	if len(s.opts.Command) == 0 {
		return nil
	}
	cmd := exec.Command(s.opts.Command[0], s.opts.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.cmdIn, s.cmdOut, s.cmdErr
	if s.cmdGroup {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.opts.Command[0], err)
	}
	s.cmd = cmd
	s.cmdDone = make(chan struct{})
	s.proc.Store(cmd.Process) // after cmdDone, which interruptCommand reads
	go func() {
		s.cmdWait = cmd.Wait()
		close(s.cmdDone)
	}()
	return nil
}

// commandExit returns the command's exit status (128+signal if killed).
func (s *liveSource) commandExit() int {
	if s.cmd == nil {
		return 0
	}
	<-s.cmdDone
	var ee *exec.ExitError
	if errors.As(s.cmdWait, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if s.cmdWait != nil {
		return 127
	}
	return 0
}

// interruptCommand sends the command's process group SIGINT (see
// cmdGroup), unless it has exited. Safe from any goroutine.
func (s *liveSource) interruptCommand() {
	p := s.proc.Load()
	if p == nil || !s.cmdGroup {
		return
	}
	select {
	case <-s.cmdDone:
		return // reaped: the group may be gone, its id reused
	default:
	}
	_ = syscall.Kill(-p.Pid, syscall.SIGINT)
}
