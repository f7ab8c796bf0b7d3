package liveview

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/tcptrace/tcptrace/internal/engine"
)

// Config says where the view draws and how it reaches the session.
type Config struct {
	// In is the terminal's input (nil: no keys; Ctrl-C then stays a
	// signal); Out the terminal the view draws on.
	In  io.Reader
	Out io.Writer
	// Env is the environment, for the terminal type and NO_COLOR.
	Env []string
	// Command is the command run while tracing, if any; Output returns
	// its last n lines.
	Command []string
	Output  func(n int) []string
	// Stop is called when the user asks to stop (q, Ctrl-C); Abort when
	// the user presses Ctrl-C again while stopping. Both must not block.
	Stop, Abort func()
	// MinRedraw bounds how often snapshots are drawn: at most one per
	// MinRedraw (default 250 ms), whatever --interval is.
	MinRedraw time.Duration
}

// outputLines is how many of the command's last lines the view asks for:
// more than the tallest pane shows.
const outputLines = 200

// fps is the renderer's frame rate: a frame that did not change costs
// only a comparison, and keys are answered within 1/fps.
const fps = 10

// View runs the Model on the terminal. Its methods may be called from any
// goroutine; Interval never blocks.
type View struct {
	cfg    Config
	prog   *tea.Program
	latest atomic.Pointer[engine.Snapshot]
	wake   chan struct{}
	quit   chan struct{}
	done   chan struct{} // the program returned and the terminal is restored
	err    error
	once   sync.Once
}

// Open takes over the terminal (alternate screen, raw input) and starts
// drawing. Close gives it back.
func Open(cfg Config) *View {
	if cfg.MinRedraw <= 0 {
		cfg.MinRedraw = 250 * time.Millisecond
	}
	v := &View{cfg: cfg, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	m := NewModel(cfg.Command, cfg.Stop, cfg.Abort)
	opts := []tea.ProgramOption{
		tea.WithOutput(cfg.Out), tea.WithInput(cfg.In), tea.WithEnvironment(cfg.Env),
		// Signals stay with the session: the first SIGINT stops tracing,
		// the second exits at once, with or without the view.
		tea.WithoutSignalHandler(),
		tea.WithFPS(fps),
	}
	v.prog = tea.NewProgram(m, opts...)
	go func() {
		defer close(v.done)
		_, err := v.prog.Run()
		if err != nil && !errors.Is(err, tea.ErrProgramKilled) {
			v.err = fmt.Errorf("live view: %w", err)
		}
	}()
	go v.feed()
	return v
}

// feed hands the latest snapshot to the program, at most once per
// MinRedraw: the goroutine that reads the kernel only stores a pointer.
func (v *View) feed() {
	var last time.Time
	for {
		select {
		case <-v.quit:
			return
		case <-v.done:
			return
		case <-v.wake:
		}
		if wait := v.cfg.MinRedraw - time.Since(last); wait > 0 {
			select {
			case <-time.After(wait):
			case <-v.quit:
				return
			}
		}
		last = time.Now()
		f := Frame{Snapshot: v.latest.Load()}
		if v.cfg.Output != nil {
			f.Output = v.cfg.Output(outputLines)
		}
		v.prog.Send(f)
	}
}

// Interval implements engine.Sink: it keeps the snapshot for the next
// frame, and never blocks.
func (v *View) Interval(s *engine.Snapshot) {
	v.latest.Store(s)
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// Stopping tells the user that tracing is stopping.
func (v *View) Stopping() {
	go v.prog.Send(stoppingMsg{})
}

// Close gives the terminal back (leaves the alternate screen, restores
// the input mode) and waits until it has, for at most a second. It may be
// called more than once, from any goroutine.
func (v *View) Close() error {
	v.once.Do(func() {
		close(v.quit)
		v.prog.Quit()
	})
	select {
	case <-v.done:
	case <-time.After(time.Second):
		// Quit is a message: if the program is stuck, Kill restores the
		// terminal without waiting for it.
		v.prog.Kill()
		select {
		case <-v.done:
		case <-time.After(time.Second):
			return errors.New("live view: the terminal was not restored in time")
		}
	}
	return v.err
}
