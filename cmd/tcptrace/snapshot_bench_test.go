package main

import (
	"testing"

	"github.com/tcptrace/tcptrace/internal/testutil/testnet"
)

// BenchmarkSnapshot times `tcptrace --snapshot -o json`, the built binary
// as a user runs it, in a namespace of 100,000 sockets: 25,000 open
// loopback connections (both ends) and 25,000 whose client closed (a
// CLOSE_WAIT socket and a FIN_WAIT2 orphan each), or 50,000 of the latter
// (every CLOSE_WAIT socket's owner to find). The sockets are held by a few
// sleep processes (testnet.Populate). The target is under a second.
// Needs root.
//
//	go test -run '^$' -bench Snapshot -benchtime 5x ./cmd/tcptrace
func BenchmarkSnapshot(b *testing.B) {
	for _, bc := range []struct {
		name                   string
		established, closeWait int
	}{
		{"100k-sockets/25k-close-wait", 25000, 25000},
		{"100k-sockets/50k-close-wait", 0, 50000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ns := testnet.New(b)
			ns.Populate(b, 4, bc.established, bc.closeWait)
			b.Run("tcptrace--snapshot", func(b *testing.B) {
				var out []byte
				for b.Loop() {
					var err error
					if out, err = ns.Command(binary, "--snapshot", "-o", "json", "--close-wait-threshold", "0s").Output(); err != nil {
						b.Fatalf("tcptrace --snapshot: %v", err)
					}
				}
				r := parseReport(b, string(out))
				if r.Census.Total < 2*bc.established+bc.closeWait || r.CloseWait.Current != bc.closeWait {
					b.Fatalf("census of %d sockets, %d CLOSE_WAIT; want %d and %d", r.Census.Total, r.CloseWait.Current,
						2*bc.established+2*bc.closeWait, bc.closeWait)
				}
				owned := 0
				for _, p := range r.CloseWait.ByProcess {
					if p.PID != 0 {
						owned += p.Count
					}
				}
				b.ReportMetric(float64(r.Census.Total), "sockets")
				b.ReportMetric(r.Census.DurationS*1000, "census+owners-ms")
				if owned != bc.closeWait {
					b.Errorf("%d CLOSE_WAIT sockets attributed, want %d", owned, bc.closeWait)
				}
			})
			// The same census by ss, in the same namespace and minute: the
			// machines are shared, so read the ratio, not the number.
			for _, args := range [][]string{{"-tan"}, {"-tanp"}} {
				b.Run("ss"+args[0], func(b *testing.B) {
					for b.Loop() {
						if err := ns.Command("ss", args...).Run(); err != nil {
							b.Fatalf("ss %v: %v", args, err)
						}
					}
				})
			}
		})
	}
}
