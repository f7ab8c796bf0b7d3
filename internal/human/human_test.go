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
