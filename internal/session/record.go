package session

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tcptrace/tcptrace/internal/capture"
)

// recording is the capture file of -w: a capture.Writer beside the
// engine, so it records exactly the stream the engine is fed.
type recording struct {
	path string
	f    *os.File
	w    *capture.Writer
}

// openRecording creates the -w file at once, so that a path that cannot
// be written fails before tracing starts; nil without -w.
func openRecording(opts Options, stderr io.Writer) (*recording, error) {
	if opts.Write == "" {
		return nil, nil
	}
	if opts.Read != "" && sameFile(opts.Read, opts.Write) {
		return nil, fmt.Errorf("-w %s: that is the capture being read", opts.Write)
	}
	f, err := os.Create(opts.Write)
	if err != nil {
		return nil, fmt.Errorf("creating the capture file: %w", err)
	}
	rec := &recording{path: opts.Write, f: f, w: capture.NewWriter(f)}
	rec.w.OnError = func(err error) {
		// Tracing goes on: the report matters more than the capture.
		fmt.Fprintf(stderr, "tcptrace: writing the capture %s failed: %v; it stops here (replayable up to its last complete block), tracing goes on\n",
			opts.Write, err)
	}
	return rec, nil
}

// close writes the last block and closes the file. A capture that got
// no Start (tracing never began) is removed; one that failed to write is
// an error, after the outputs.
func (r *recording) close() error {
	if r == nil {
		return nil
	}
	werr := r.w.Close()
	if werr == nil {
		werr = r.f.Sync()
	}
	cerr := r.f.Close()
	if !r.w.Recorded() {
		_ = os.Remove(r.path)
		return nil
	}
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("the capture %s is incomplete (%w); tcptrace -r reads it up to its last complete block", r.path, err)
	}
	return nil
}
