package session

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// commandOutput keeps what the command run with `tcptrace -- COMMAND`
// writes while the live view owns the terminal: its last lines for the
// view's pane, and all of it, to print once the view has closed (wrk's
// summary must reach the user). Each stream is kept in memory up to
// spillAt bytes, then in a temporary file.
type commandOutput struct {
	mu       sync.Mutex
	tail     []string // the last tailLines complete lines, oldest first
	partial  []byte   // the line being written
	tempDir  string
	spillAt  int
	streams  [2]spool // stdout, stderr
	writeErr error
}

const (
	// tailLines bounds the lines kept for the pane; maxLineBytes a line.
	tailLines    = 200
	maxLineBytes = 1024
	// spillAt is how much of a stream is kept in memory.
	spillAt = 4 << 20
)

// spool is one stream's full copy.
type spool struct {
	buf  bytes.Buffer
	file *os.File
}

func newCommandOutput() *commandOutput {
	return &commandOutput{spillAt: spillAt}
}

// Stdout and Stderr are the writers to give the command.
func (c *commandOutput) Stdout() io.Writer { return streamWriter{c, 0} }
func (c *commandOutput) Stderr() io.Writer { return streamWriter{c, 1} }

type streamWriter struct {
	c *commandOutput
	i int
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.c.write(w.i, p)
	// The command must never fail to write because of us: an error is
	// reported when the output is printed.
	return len(p), nil
}

func (c *commandOutput) write(i int, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keep(&c.streams[i], p)
	for len(p) > 0 {
		j := bytes.IndexAny(p, "\r\n")
		if j < 0 {
			c.partial = appendBounded(c.partial, p)
			return
		}
		c.partial = appendBounded(c.partial, p[:j])
		if p[j] == '\r' && (j+1 == len(p) || p[j+1] != '\n') {
			// A carriage return alone redraws the line (a progress
			// counter): only what comes after it stays.
			c.partial = c.partial[:0]
		} else {
			c.tail = append(c.tail, string(c.partial))
			if len(c.tail) > tailLines {
				c.tail = c.tail[len(c.tail)-tailLines:]
			}
			c.partial = c.partial[:0]
			if p[j] == '\r' {
				j++ // \r\n
			}
		}
		p = p[j+1:]
	}
}

func appendBounded(b, p []byte) []byte {
	return append(b, p[:min(len(p), max(0, maxLineBytes-len(b)))]...)
}

// keep appends p to a stream's copy, moving it to a temporary file once
// it grows past spillAt.
func (c *commandOutput) keep(s *spool, p []byte) {
	if c.writeErr != nil {
		return
	}
	if s.file == nil && s.buf.Len()+len(p) <= c.spillAt {
		s.buf.Write(p)
		return
	}
	if s.file == nil {
		f, err := os.CreateTemp(c.tempDir, "tcptrace-output-*")
		if err != nil {
			c.writeErr = fmt.Errorf("keeping the command's output: %w", err)
			return
		}
		// Unlinked at once: the file goes away with tcptrace, whatever
		// way it exits.
		_ = os.Remove(f.Name())
		s.file = f
		if _, err := s.file.Write(s.buf.Bytes()); err != nil {
			c.writeErr = fmt.Errorf("keeping the command's output: %w", err)
			return
		}
		s.buf = bytes.Buffer{}
	}
	if _, err := s.file.Write(p); err != nil {
		c.writeErr = fmt.Errorf("keeping the command's output: %w", err)
	}
}

// Tail returns the last n lines, the one being written included.
func (c *commandOutput) Tail(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.tail[max(0, len(c.tail)-n):]
	if len(c.partial) > 0 {
		out = append(out[:len(out):len(out)], string(c.partial))
		out = out[max(0, len(out)-n):]
	}
	return append([]string(nil), out...)
}

// WriteTo prints the whole output: the command's stdout to stdout, its
// stderr to stderr (the order between the two is lost), and frees it.
func (c *commandOutput) WriteTo(stdout, stderr io.Writer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	errs := []error{c.writeErr}
	for i, w := range []io.Writer{stdout, stderr} {
		s := &c.streams[i]
		var err error
		if s.file != nil {
			if _, err = s.file.Seek(0, io.SeekStart); err == nil {
				_, err = io.Copy(w, s.file)
			}
			_ = s.file.Close()
			s.file = nil
		} else {
			_, err = w.Write(s.buf.Bytes())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("printing the command's output: %w", err))
		}
		s.buf = bytes.Buffer{}
	}
	return errors.Join(errs...)
}

// endsInNewline says whether what was written last ends a line, so that
// what is printed after it starts on a line of its own.
func (c *commandOutput) endsInNewline() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.partial) == 0
}
