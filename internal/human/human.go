// Package human formats numbers the way a sysadmin reads them in a report.
package human

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

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

// Count shortens a count: 999, 1.2k, 3.4M, 5.6G.
func Count[T int | int64 | uint64](n T) string {
	f := float64(n)
	switch a := math.Abs(f); {
	case a < 1000:
		return strconv.FormatInt(int64(n), 10)
	case a < 999_950:
		return fmt.Sprintf("%.1fk", f/1e3)
	case a < 999_950_000:
		return fmt.Sprintf("%.1fM", f/1e6)
	}
	return fmt.Sprintf("%.1fG", f/1e9)
}

// Grouped writes a count in full with thousands separators: 28,232.
func Grouped[T int | int64 | uint64](n T) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out strings.Builder
	if neg {
		out.WriteByte('-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out.WriteByte(',')
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// Plural is "s" unless n is 1: "3 socket" + Plural(3).
func Plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// PluralES is Plural for words that take "es": "2 process" + PluralES(2).
func PluralES(n int) string {
	if n == 1 {
		return ""
	}
	return "es"
}
