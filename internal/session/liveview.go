package session

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/charmbracelet/x/term"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/liveview"
)

// liveTerminal returns the terminal the live view draws on, or nil when
// there is to be no view: it is on when stdout is a terminal, unless
// events, JSON or quiet were asked for, or --no-live.
func liveTerminal(opts Options, stdout io.Writer) *os.File {
	if opts.NoLive || opts.Events || opts.JSON || opts.Quiet {
		return nil
	}
	f, ok := stdout.(*os.File)
	if !ok || !term.IsTerminal(f.Fd()) || os.Getenv("TERM") == "dumb" {
		return nil
	}
	return f
}

// liveViewSink shows the live view while tracing. It opens the view once
// tracing has started (so a failure to start prints on a terminal left
// alone), and when it closes, prints the command's output, which the
// view kept meanwhile, before the report.
type liveViewSink struct {
	cfg      liveview.Config
	output   *commandOutput // nil without a command
	stdout   io.Writer
	stderr   io.Writer
	teardown *Teardown

	view     atomic.Pointer[liveview.View]
	closeErr error
	once     sync.Once
	untrack  func()
}

// newLiveViewSink returns the live view's sink, or nil when there is to
// be no view.
func newLiveViewSink(opts Options, stdout, stderr io.Writer) *liveViewSink {
	out := liveTerminal(opts, stdout)
	if out == nil {
		return nil
	}
	s := &liveViewSink{stdout: stdout, stderr: stderr, teardown: opts.Teardown}
	s.cfg = liveview.Config{Out: out, Env: os.Environ(), Command: opts.Command}
	if term.IsTerminal(os.Stdin.Fd()) {
		s.cfg.In = os.Stdin
	}
	if len(opts.Command) > 0 {
		s.output = newCommandOutput()
		s.cfg.Output = s.output.Tail
	}
	return s
}

// wire connects the view to the session: q and Ctrl-C stop tracing and
// interrupt the command, as Ctrl-C would without the view; the command's
// output goes to the view's pane (and is kept); the view opens once the
// source has started.
func (s *liveViewSink) wire(ctx context.Context, stop context.CancelFunc, src *liveSource, p *pipeline) {
	interrupt := func() {
		if ch := src.opts.Interrupt; ch != nil {
			select {
			case ch <- os.Interrupt:
			default:
			}
		}
	}
	s.cfg.Stop = func() {
		stop()
		interrupt()
	}
	s.cfg.Abort = interrupt
	if s.output != nil {
		// The terminal is the view's: the command reads nothing from it,
		// and writes to the pane.
		src.cmdIn, src.cmdOut, src.cmdErr = nil, s.output.Stdout(), s.output.Stderr()
		src.cmdGroup = true
	}
	p.onStart = func(*engine.Start) { s.open(p.Engine.Snapshot()) }
	// Stopping (q, Ctrl-C, a signal) interrupts the command too, as
	// Ctrl-C in a terminal the view did not hold would have.
	go func() {
		<-ctx.Done()
		src.interruptCommand()
		if v := s.view.Load(); v != nil {
			v.Stopping()
		}
	}()
}

func (s *liveViewSink) open(first *engine.Snapshot) {
	v := liveview.Open(s.cfg)
	// An exit at once still gives the terminal back, and prints what
	// the command wrote.
	s.untrack = s.teardown.add(func() { _ = s.close() })
	s.view.Store(v)
	v.Interval(first)
}

func (s *liveViewSink) Interval(snap *engine.Snapshot) {
	if v := s.view.Load(); v != nil {
		v.Interval(snap)
	}
}

func (s *liveViewSink) Final(*engine.Snapshot) error { return s.close() }

// close gives the terminal back and prints the command's output; it runs
// once, on every way out of Run.
func (s *liveViewSink) close() error {
	s.once.Do(func() {
		if v := s.view.Load(); v != nil {
			s.closeErr = v.Close()
			s.untrack()
		}
		if s.output != nil {
			if err := s.output.WriteTo(s.stdout, s.stderr); err != nil && s.closeErr == nil {
				s.closeErr = err
			}
			if !s.output.endsInNewline() {
				fmt.Fprintln(s.stdout)
			}
		}
	})
	return s.closeErr
}

// Teardown holds what must be undone before tcptrace exits at once (a
// second interrupt): the live view gives the terminal back. main runs it
// before os.Exit; Run adds to it. The zero value is ready to use.
type Teardown struct {
	mu  sync.Mutex
	fns map[int]func()
	n   int
}

// add registers f, and returns a func that unregisters it. A nil
// Teardown ignores f.
func (t *Teardown) add(f func()) (remove func()) {
	if t == nil {
		return func() {}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fns == nil {
		t.fns = map[int]func(){}
	}
	id := t.n
	t.n++
	t.fns[id] = f
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.fns, id)
	}
}

// Run runs what was registered and not removed.
func (t *Teardown) Run() {
	t.mu.Lock()
	fns := make([]func(), 0, len(t.fns))
	for _, f := range t.fns {
		fns = append(fns, f)
	}
	t.mu.Unlock()
	for _, f := range fns {
		f()
	}
}
