// Package session runs one tcptrace session: it wires a source (the probe
// while tracing) to the engine and to the outputs that read the engine's
// snapshots, runs the user's command, and stops on a signal, a duration or
// the command's exit. It is where the pure packages meet the system.
package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"time"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/hostinfo"
	"github.com/tcptrace/tcptrace/internal/owner"
	"github.com/tcptrace/tcptrace/internal/probe"
)

// Version is tcptrace's version, reported in --version and the report.
var Version = "0.1.0-dev"

// Options is what the command line asks for.
type Options struct {
	// Events prints every event as it happens instead of a final report.
	Events bool
	// Snapshot reports at once from one census, without tracing (no BPF).
	Snapshot bool
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
	// Quiet suppresses the status line (and the live view).
	Quiet bool
	// NoLive turns the live view off: it is on when stdout is a terminal,
	// unless Events, JSON or Quiet.
	NoLive bool
	// Interrupt, if set, receives os.Interrupt when the live view's user
	// presses q or Ctrl-C (a raw-mode terminal sends no SIGINT), so that
	// main counts it like a signal: the first stops, the second exits at
	// once. Teardown, if set, is what main runs before such an exit.
	Interrupt chan<- os.Signal
	Teardown  *Teardown
	// CloseWaitThreshold is the age past which a CLOSE_WAIT socket counts
	// as leaked.
	CloseWaitThreshold time.Duration
	// MaxSockets caps the full sockets tracked.
	MaxSockets int
	// RingBytes is the size of each CPU's BPF ring buffer.
	RingBytes int
	// Hooks picks how TIME_WAIT mini-sockets are followed (--hooks).
	Hooks probe.Hooks
	// ReadyFile, if set, is created once the probe is attached and the
	// start-up census taken (for tests and scripts that must not start
	// traffic earlier).
	ReadyFile string
	// Command is run as a child while tracing; tracing stops when it exits.
	Command []string
	// Args is tcptrace's own command line, recorded with the trace.
	Args []string
	// Metrics, if set, is the address /metrics is served on (":9877" binds
	// 127.0.0.1).
	Metrics string
	// Write records the trace to this capture file (-w); Read replays
	// one instead of tracing (-r): then PID, Port and Family filter the
	// replay, and CloseWaitThreshold, if not 0, overrides the capture's.
	Write, Read string
	// HTML writes the final report as a self-contained page to this file.
	HTML string
	// DevSkip and DevIdle measure tcptrace's own cost (probe.Config.Skip
	// and Idle); they lose events.
	DevSkip []string
	DevIdle bool
}

// ExitError carries an exit status that is not a failure of tcptrace
// itself: the status of the command run with `tcptrace -- CMD`.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("command exited with status %d", e.Code) }

// Run traces (or replays a capture, or takes a snapshot) and prints, and
// returns when done. A non-nil *ExitError carries the exit status of the
// user's command.
func Run(ctx context.Context, opts Options, stdout, stderr io.Writer) error {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	var exporter engine.Sink
	if opts.Metrics != "" {
		// Bound before anything else: a port in use fails now.
		srv, x, err := serveMetrics(opts.Metrics)
		if err != nil {
			return err
		}
		defer srv.Close()
		exporter = x
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	view := newLiveViewSink(opts, stdout, stderr)
	// Sinks that read a snapshot every interval, and those that read only
	// the final one; a snapshot is made per interval only when needed.
	var live, final []engine.Sink
	var events *eventSink
	cfg := engine.Config{}
	if opts.Read != "" || opts.Snapshot {
		// A replay or a snapshot runs in a moment: no status line.
		opts.Quiet, view = true, nil
	}
	if opts.Read != "" {
		// The capture's threshold unless another is asked for.
		cfg.Threshold = opts.CloseWaitThreshold
	}
	if opts.Events {
		events = newEventSink(stdout, stderr, opts)
		cfg.OnEvent = events.write
		final = append(final, events)
	} else {
		switch {
		case view != nil:
			live = append(live, view)
		case !opts.Quiet:
			live = append(live, &statusSink{w: stderr})
		}
		final = append(final, &reportSink{w: stdout, stderr: stderr, json: opts.JSON})
	}
	if exporter != nil {
		live = append(live, exporter)
	}
	if opts.HTML != "" {
		final = append(final, &htmlSink{path: opts.HTML})
	}
	eng := engine.New(cfg)
	p := &pipeline{Engine: eng, live: live}
	if events != nil {
		p.onStart = events.start
		p.onIdle = events.flush
		p.onNamespace = events.namespace
	}

	rec, err := openRecording(opts, stderr)
	if err != nil {
		return err
	}
	var in engine.Input = p
	if rec != nil {
		in = engine.Tee(rec.w, p)
	}
	var src source
	var replay *replaySource
	switch {
	case opts.Snapshot:
		src = &snapshotSource{opts: opts, procfs: owner.Proc("/proc")}
	case opts.Read != "":
		replay = &replaySource{opts: opts, stderr: stderr}
		src = replay
	default:
		tracer := &liveSource{opts: opts, stderr: stderr, procfs: owner.Proc("/proc"),
			closeWaitOwners: eng.CloseWaitInodes}
		// The command's output goes where it does not mix with ours:
		// with JSON on stdout, to stderr.
		tracer.cmdIn, tracer.cmdOut, tracer.cmdErr = os.Stdin, stdout, stderr
		if opts.JSON {
			tracer.cmdOut = stderr
		}
		if view != nil {
			defer view.close() // on every way out: the terminal is given back
			view.wire(ctx, stop, tracer, p)
		}
		src = tracer
	}
	code, err := src.run(ctx, in)
	recErr := rec.close()
	if err != nil {
		return errors.Join(err, recErr)
	}
	last := eng.Snapshot()
	errs := []error{recErr}
	if replay != nil {
		errs = append(errs, replay.truncated)
	}
	for _, s := range append(live, final...) {
		errs = append(errs, s.Final(last))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// newStart opens a stream from this host: the facts of the network
// namespace tcptrace runs in (its sysctls, the kernel), and the options
// the numbers depend on. The source fills in the rest (times, scope).
func newStart(mode string, opts Options, procfs fs.FS) (*engine.Start, error) {
	sysctls, err := hostinfo.ReadSysctls(procfs)
	if err != nil {
		return nil, fmt.Errorf("reading sysctls: %w", err)
	}
	release, _ := hostinfo.KernelRelease(procfs)
	return &engine.Start{
		Mode: mode, Version: Version, Args: opts.Args,
		Kernel: hostinfo.ShortRelease(release), CPUs: runtime.NumCPU(),
		Threshold: opts.CloseWaitThreshold, MaxSockets: opts.MaxSockets,
		Sysctl: sysctls,
	}, nil
}

// source feeds a stream into the pipeline: the live probe, a capture, or
// the census alone (--snapshot).
type source interface {
	run(ctx context.Context, in engine.Input) (code int, err error)
}

// pipeline is the Input a source feeds: the engine, plus the sinks that
// read its snapshot after each interval, and hooks for an output that
// follows the stream itself (the event printer).
type pipeline struct {
	*engine.Engine
	live    []engine.Sink
	onStart func(*engine.Start)
	// onIdle runs whenever the reader has caught up: when it was idle,
	// and at each tick.
	onIdle func()
	// onNamespace sees each namespace record (--all-netns).
	onNamespace func(*engine.Namespace)
}

func (p *pipeline) Namespace(n *engine.Namespace) {
	p.Engine.Namespace(n)
	if p.onNamespace != nil {
		p.onNamespace(n)
	}
}

func (p *pipeline) Start(s *engine.Start) {
	p.Engine.Start(s)
	if p.onStart != nil {
		p.onStart(s)
	}
}

func (p *pipeline) Flush(nowNs uint64) {
	p.Engine.Flush(nowNs)
	if p.onIdle != nil {
		p.onIdle()
	}
}

func (p *pipeline) Tick(t *engine.Tick) {
	p.Engine.Tick(t)
	if p.onIdle != nil {
		p.onIdle()
	}
	if len(p.live) == 0 {
		return
	}
	snap := p.Engine.Snapshot()
	for _, s := range p.live {
		s.Interval(snap)
	}
}
