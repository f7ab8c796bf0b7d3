package render

import (
	"fmt"
	"time"

	"github.com/tcptrace/tcptrace/internal/human"
	"github.com/tcptrace/tcptrace/internal/tracker"
)

// StatusLine is the one-line summary printed every interval while tracing.
// closeWait is the census count of CLOSE_WAIT sockets (the truth for the
// traced namespace); b.CloseWaitOld those of them past the threshold that
// the events saw entering CLOSE_WAIT.
func StatusLine(elapsed time.Duration, b tracker.Brief, closeWait int, drops uint64) string {
	s := fmt.Sprintf("tcptrace %s: %s events | TIME_WAIT %s (peak %s, %s created) | FIN_WAIT2 orphans %s | CLOSE_WAIT %d",
		elapsed.Truncate(time.Second), human.Count(b.Events), human.Count(b.TimeWait),
		human.Count(b.TimeWaitPeak), human.Count(b.TimeWaitCreated), human.Count(b.Orphans), closeWait)
	if b.CloseWaitOld > 0 {
		s += fmt.Sprintf(" (%d old)", b.CloseWaitOld)
	}
	if b.ConnectFailures > 0 {
		s += fmt.Sprintf(" | connect() EADDRNOTAVAIL %d", b.ConnectFailures)
	}
	if drops > 0 {
		s += fmt.Sprintf(" | DROPPED %d", drops)
	}
	return s
}
