package session

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/render/html"
)

// htmlSink writes the final report as one HTML page (--html).
type htmlSink struct{ path string }

func (s *htmlSink) Interval(*engine.Snapshot) {}

// Final writes the page beside its destination and renames it into
// place, so that a reader never sees half a page.
func (s *htmlSink) Final(snap *engine.Snapshot) error {
	var b bytes.Buffer
	if err := html.Write(&b, snap); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".tcptrace-*.html")
	if err != nil {
		return fmt.Errorf("writing the HTML report: %w", err)
	}
	_, werr := tmp.Write(b.Bytes())
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), s.path)
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("writing the HTML report %s: %w", s.path, werr)
	}
	return nil
}
