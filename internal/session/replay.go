package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tcptrace/tcptrace/internal/capture"
	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/report"
)

// replaySource feeds a capture file (tcptrace -r) into the pipeline: the
// stream the live trace fed its engine, through the filters asked for on
// replay. It needs no root and no BPF.
type replaySource struct {
	opts   Options
	stderr io.Writer
	// truncated is set when the capture ended abruptly: the outputs then
	// cover the trace up to its last complete block, and Run fails after
	// writing them.
	truncated error
}

func (s *replaySource) open() (*capture.Reader, *os.File, error) {
	f, err := os.Open(s.opts.Read)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the capture: %w", err)
	}
	r, err := capture.NewReader(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", s.opts.Read, err)
	}
	return r, f, nil
}

// run replays the capture into in. It returns 0: the exit status of a
// command run while tracing is in the report, not tcptrace's own.
func (s *replaySource) run(ctx context.Context, in engine.Input) (int, error) {
	flt := capture.Filter{PID: s.opts.PID, Port: s.opts.Port, Family: s.opts.Family}
	var owners map[uint64]int
	if flt.PID != 0 {
		// The pid filter keeps the CLOSE_WAIT sockets the process held:
		// owners are named in censuses as the trace goes, so a first pass
		// learns them all before the replay.
		r, f, err := s.open()
		if err != nil {
			return 0, err
		}
		scan := &capture.OwnerScan{}
		err = r.Replay(ctx, scan)
		r.Close()
		f.Close()
		if err != nil && !errors.Is(err, capture.ErrTruncated) {
			return 0, s.fail(err)
		}
		owners = scan.Owners
	}
	r, f, err := s.open()
	if err != nil {
		return 0, err
	}
	defer f.Close()
	defer r.Close()
	tail := &streamTail{next: in}
	var next engine.Input = tail
	var filter *capture.FilterInput
	if !flt.Empty() {
		filter = capture.NewFilter(flt, owners, tail)
		next = filter
	}
	err = r.Replay(ctx, next)
	if filter != nil && filter.Err() != nil {
		return 0, filter.Err()
	}
	switch {
	case err == nil:
	case errors.Is(err, capture.ErrTruncated) && tail.started:
		// Close the stream as the live trace would have there, so that
		// the outputs describe what the capture holds; Run fails after
		// writing them.
		s.truncated = fmt.Errorf("%s: %w; the outputs cover its first %.1f s", s.opts.Read, err,
			float64(tail.nowNs-tail.startNs)/1e9)
		fmt.Fprintf(s.stderr, "tcptrace: warning: %v\n", s.truncated)
		tail.Flush(^uint64(0))
		tail.End(&engine.End{EndNs: tail.nowNs, Loss: tail.loss, Netstat: tail.netstat})
	default:
		return 0, s.fail(err)
	}
	return 0, nil
}

func (s *replaySource) fail(err error) error {
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted")
	}
	return fmt.Errorf("%s: %w", s.opts.Read, err)
}

// sameFile reports whether two paths name the same file (-w onto -r).
func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	if err1 == nil && err2 == nil {
		return os.SameFile(sa, sb)
	}
	return filepath.Clean(a) == filepath.Clean(b)
}

// streamTail passes a stream on and remembers where it got to, so that a
// capture cut short can be closed with the latest counters.
type streamTail struct {
	next           engine.Input
	started        bool
	startNs, nowNs uint64
	loss           report.Loss
	netstat        map[string]uint64
}

func (t *streamTail) Start(s *engine.Start) {
	t.started, t.startNs, t.nowNs = true, s.StartNs, s.StartNs
	t.netstat = s.Netstat
	t.next.Start(s)
}

func (t *streamTail) Event(ev *event.Event) {
	t.nowNs = max(t.nowNs, ev.TimeNs)
	t.next.Event(ev)
}

func (t *streamTail) Census(c *engine.Census) {
	t.nowNs = max(t.nowNs, c.TakenNs)
	t.next.Census(c)
}

func (t *streamTail) Flush(nowNs uint64) {
	if nowNs != ^uint64(0) {
		t.nowNs = max(t.nowNs, nowNs)
	}
	t.next.Flush(nowNs)
}

func (t *streamTail) Tick(k *engine.Tick) {
	t.nowNs = max(t.nowNs, k.NowNs)
	t.loss = k.Loss
	if k.Netstat != nil {
		t.netstat = k.Netstat
	}
	t.next.Tick(k)
}

func (t *streamTail) Namespace(n *engine.Namespace) { t.next.Namespace(n) }

func (t *streamTail) End(e *engine.End) { t.next.End(e) }
