package human

import "testing"

func TestFormats(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{Seconds(3.44), "3.4 s"}, {Seconds(60), "60.0 s"}, {Seconds(300), "5.0 min"},
		{Seconds(5400), "90.0 min"}, {Seconds(4 * 3600), "4.0 h"}, {Seconds(3 * 86400), "3.0 days"}, {Seconds(0.0005), "0.50 ms"},
		{Millis(0), "0"}, {Millis(0.35), "0.35 ms"}, {Millis(4.21), "4.2 ms"}, {Millis(120), "120 ms"},
		{Millis(2500), "2.5 s"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestCounts(t *testing.T) {
	counts := map[uint64]string{0: "0", 999: "999", 1000: "1.0k", 1234: "1.2k", 27000: "27.0k", 999_949: "999.9k",
		999_950: "1.0M", 3_400_000: "3.4M", 2_000_000_000: "2.0G"}
	for n, want := range counts {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
	ms := map[float64]string{0: "0", 0.123: "0.12 ms", 3.45: "3.5 ms", 250: "250 ms", 3400: "3.4 s", 60000: "60.0 s",
		312000: "5.2 min", 5_400_000: "90.0 min", 9_000_000: "2.5 h", 3 * 86400_000: "3.0 days"}
	for v, want := range ms {
		if got := Millis(v); got != want {
			t.Errorf("Millis(%v) = %q, want %q", v, got, want)
		}
	}
	grouped := map[int64]string{0: "0", 12: "12", 999: "999", 1000: "1,000", 1234: "1,234", 28232: "28,232",
		1234567: "1,234,567", -1234: "-1,234", -4200: "-4,200"}
	for n, want := range grouped {
		if got := Grouped(n); got != want {
			t.Errorf("Grouped(%d) = %q, want %q", n, got, want)
		}
	}
}
