package render

import (
	"fmt"
	"time"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/human"
	"github.com/tcptrace/tcptrace/internal/safe"
)

// StatusLine is the one-line summary printed every interval while tracing,
// from the latest sample: populations now, the TIME_WAIT peak so far, and
// whatever went wrong (connect() failures, drops). timeWaitPeak is the
// report's peak.
func StatusLine(elapsed time.Duration, p engine.Sample, timeWaitPeak int64) string {
	s := fmt.Sprintf("tcptrace %s: %s events | TIME_WAIT %s (peak %s, %s created) | FIN_WAIT2 orphans %s | CLOSE_WAIT %d",
		elapsed.Truncate(time.Second), human.Count(p.Events), human.Count(p.TimeWait),
		human.Count(max(timeWaitPeak, p.TimeWait)), human.Count(p.TimeWaitCreated), human.Count(p.Orphans), p.CloseWait)
	if p.CloseWaitOld > 0 {
		s += fmt.Sprintf(" (%d old)", p.CloseWaitOld)
	}
	if p.ConnectFailures > 0 {
		s += fmt.Sprintf(" | connect() EADDRNOTAVAIL %d", p.ConnectFailures)
	}
	if p.Dropped > 0 {
		s += fmt.Sprintf(" | DROPPED %d", p.Dropped)
	}
	// Nothing from outside is in the line today; should a process name
	// join it, it cannot reach the terminal raw.
	return safe.Text(s)
}
