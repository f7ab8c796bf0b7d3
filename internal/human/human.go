// Package human formats numbers the way a sysadmin reads them in a report.
package human

import "fmt"

// Seconds formats a duration in seconds: 3.4 s, 60.0 s, 5.2 min, 1.5 h,
// 2.0 days; below a millisecond it falls back to Millis.
func Seconds(s float64) string {
	switch {
	case s < 0.001 && s > 0:
		return Millis(s * 1000)
	case s < 120:
		return fmt.Sprintf("%.1f s", s)
	case s < 2*3600:
		return fmt.Sprintf("%.1f min", s/60)
	case s < 2*86400:
		return fmt.Sprintf("%.1f h", s/3600)
	}
	return fmt.Sprintf("%.1f days", s/86400)
}

// Millis formats a duration in milliseconds: 0.35 ms, 4.2 ms, 120 ms, and
// Seconds from a second up.
func Millis(ms float64) string {
	switch {
	case ms == 0:
		return "0"
	case ms < 1:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 10:
		return fmt.Sprintf("%.1f ms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0f ms", ms)
	}
	return Seconds(ms / 1000)
}
