// Package session runs one tcptrace session: it loads the probe, feeds the
// tracker, takes the census, runs the user's command, and prints events or
// the final report. It is where the pure packages meet the system.
package session

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/probe"
	"github.com/tcptrace/tcptrace/internal/render"
	"github.com/tcptrace/tcptrace/internal/tracker"
)

// Version is tcptrace's version, reported in --version and the report.
var Version = "0.1.0-dev"

// Options is what the command line asks for.
type Options struct {
	// Events prints every event as it happens instead of a final report.
	Events bool
	// Duration stops tracing after this long; 0 runs until interrupted (or
	// until Command exits).
	Duration time.Duration
	// JSON selects JSON output (JSON Lines for events; the report as the
	// last line).
	JSON bool
	// PID, Port and Family filter in the kernel; 0 means no filter.
	PID    int
	Port   int
	Family event.Family
	// AllNetNS traces every network namespace instead of tcptrace's own.
	AllNetNS bool
	// Interval is the period of the status line and the census.
	Interval time.Duration
	// Quiet suppresses the status line.
	Quiet bool
	// CloseWaitThreshold is the age past which a CLOSE_WAIT socket counts
	// as leaked.
	CloseWaitThreshold time.Duration
	// MaxSockets caps the full sockets tracked.
	MaxSockets int
	// RingBytes is the BPF ring buffer size.
	RingBytes int
	// ReadyFile, if set, is created once the probe is attached (for tests
	// and scripts that must not start traffic earlier).
	ReadyFile string
	// Command is run as a child while tracing; tracing stops when it exits.
	Command []string
	// DevSkip and DevIdle measure tcptrace's own cost (probe.Config.Skip
	// and Idle); they lose events.
	DevSkip []string
	DevIdle bool
}

// commandGrace is how long tracing goes on after COMMAND exits: long
// enough for a delayed ACK (40 ms, at most 200 ms) to close the last
// connections it closed.
const commandGrace = 300 * time.Millisecond

// ExitError carries an exit status that is not a failure of tcptrace
// itself: the status of the command run with `tcptrace -- CMD`.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("command exited with status %d", e.Code) }

// monoNow reads CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns().
func monoNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// netnsInode returns the inode of this process's network namespace.
func netnsInode() (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("finding this process's network namespace: %w", err)
	}
	return uint32(st.Ino), nil
}

// trace is the part both modes share: probe, tracker, loop.
type trace struct {
	opts    Options
	stderr  io.Writer
	probe   *probe.Probe
	tracker *tracker.Tracker
	ownNS   uint32
	startNs uint64
	started time.Time
	clock   render.Clock
	cmd     *exec.Cmd
	cmdDone chan struct{}
	cmdErr  error
}

func (t *trace) open(emit func(*event.Event)) error {
	ns, err := netnsInode()
	if err != nil {
		return err
	}
	t.ownNS = ns
	cfg := probe.Config{
		PID: uint32(t.opts.PID), Port: uint16(t.opts.Port), Family: t.opts.Family,
		RingBytes: t.opts.RingBytes,
		Skip:      t.opts.DevSkip, Idle: t.opts.DevIdle,
	}
	if !t.opts.AllNetNS {
		cfg.NetNS = ns
	}
	if t.opts.Events {
		cfg.Poll = 50 * time.Millisecond // a live stream should feel live
	}
	p, err := probe.Open(cfg)
	if err != nil {
		return err
	}
	t.probe = p
	t.tracker = tracker.New(tracker.Config{MaxSockets: t.opts.MaxSockets, HZ: p.HZ()}, emit)
	t.started = time.Now()
	t.startNs = monoNow()
	t.clock = render.Clock{OffsetNs: t.started.UnixNano() - int64(t.startNs), Loc: time.Local}
	if t.opts.ReadyFile != "" {
		if err := os.WriteFile(t.opts.ReadyFile, []byte("ready\n"), 0o644); err != nil {
			return fmt.Errorf("writing --ready-file: %w", err)
		}
	}
	return nil
}

// startCommand runs the user's command with its output on out.
func (t *trace) startCommand(out io.Writer) error {
	if len(t.opts.Command) == 0 {
		return nil
	}
	cmd := exec.Command(t.opts.Command[0], t.opts.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, out, t.stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", t.opts.Command[0], err)
	}
	t.cmd = cmd
	t.cmdDone = make(chan struct{})
	go func() {
		t.cmdErr = cmd.Wait()
		close(t.cmdDone)
	}()
	return nil
}

// commandExit returns the command's exit status (128+signal if killed).
func (t *trace) commandExit() int {
	if t.cmd == nil {
		return 0
	}
	<-t.cmdDone
	var ee *exec.ExitError
	if errors.As(t.cmdErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if t.cmdErr != nil {
		return 127
	}
	return 0
}

// loop reads events until ctx is done, the duration elapses or the command
// exits, then drains what the kernel already wrote. tick runs about every
// Interval, from this goroutine, so it may read the tracker.
func (t *trace) loop(ctx context.Context, tick func(nowNs uint64), idle func()) error {
	if t.opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.opts.Duration)
		defer cancel()
	}
	if t.cmdDone != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-t.cmdDone:
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
	// Stop from another goroutine: Read then returns what is left, then
	// ErrClosed, so nothing already written is lost.
	stopped := make(chan struct{})
	go func() {
		<-ctx.Done()
		_ = t.probe.Stop()
		close(stopped)
	}()
	defer func() { <-stopped }()

	interval := t.opts.Interval
	if interval <= 0 {
		interval = time.Second
	}
	next := time.Now().Add(interval)
	feed := t.tracker.Feed
	for {
		// Poll hands over every record waiting, in one batch: the tick
		// and the idle work run between batches, never per record.
		_, err := t.probe.Poll(feed)
		switch {
		case err == nil:
		case errors.Is(err, probe.ErrIdle):
			t.tracker.Flush(monoNow())
			if idle != nil {
				idle()
			}
		case errors.Is(err, probe.ErrClosed):
			t.tracker.Flush(^uint64(0))
			return nil
		default:
			return err
		}
		if now := time.Now(); !now.Before(next) && tick != nil {
			next = now.Add(interval)
			tick(monoNow())
		}
	}
}

// Run traces and prints, and returns when done. A non-nil *ExitError
// carries the exit status of the user's command.
func Run(ctx context.Context, opts Options, stdout, stderr io.Writer) error {
	if opts.Events {
		return runEvents(ctx, opts, stdout, stderr)
	}
	return runReport(ctx, opts, stdout, stderr)
}

func runEvents(ctx context.Context, opts Options, stdout, stderr io.Writer) error {
	bw := bufio.NewWriterSize(stdout, 64<<10)
	var ew *render.EventWriter
	var werr error
	t := &trace{opts: opts, stderr: stderr}
	err := t.open(func(ev *event.Event) {
		if werr == nil {
			werr = ew.Write(ev)
		}
	})
	if err != nil {
		return err
	}
	defer t.probe.Close()
	ew = render.NewEventWriter(bw, opts.JSON, t.clock)
	ew.NetNS = opts.AllNetNS

	cmdOut := io.Writer(stdout)
	if opts.JSON {
		cmdOut = stderr // keep stdout pure JSON Lines
	}
	if err := t.startCommand(cmdOut); err != nil {
		return err
	}
	// Flush the stream on every tick and idle period, not per event: a
	// write per event would cost more than tracing it.
	flush := func() {
		if err := bw.Flush(); err != nil && werr == nil {
			werr = err
		}
	}
	err = t.loop(ctx, func(uint64) { flush() }, flush)
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err == nil && werr != nil && !errors.Is(werr, syscall.EPIPE) {
		err = fmt.Errorf("writing events: %w", werr)
	}
	loss, derr := t.probe.Loss()
	drops := loss.Total()
	if derr == nil {
		st := t.tracker.Stats()
		summary := fmt.Sprintf("tcptrace: %d events in %.1f s, %d dropped", st.Events,
			time.Since(t.started).Seconds(), drops)
		if opts.JSON {
			fmt.Fprintf(stdout, `{"type":"summary","events":%d,"dropped":%d,"loss":{"ring_full":%d,"recursion":%d,"rescued":%d,"timer_misses":%d,"written":%d,"read":%d},"inconsistent":%d,"duration_s":%.3f}`+"\n",
				st.Events, drops, loss.RingFull, loss.Transitions, loss.Rescued, loss.TimerMisses, loss.Written, loss.Read,
				st.Inconsistent, time.Since(t.started).Seconds())
		}
		if drops > 0 {
			summary += " (the reader fell behind: events are missing; a faster terminal, a file, or a larger --ring-size helps)"
		}
		if !opts.Quiet || drops > 0 {
			fmt.Fprintln(stderr, summary)
		}
	}
	if err != nil {
		return err
	}
	if code := t.commandExit(); code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}
