package session

import (
	"context"
	"io"
	"testing"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/owner"
	"github.com/tcptrace/tcptrace/internal/render"
	"github.com/tcptrace/tcptrace/internal/testutil/testnet"
)

// BenchmarkSnapshotSource is --snapshot in process, step by step, in a
// namespace of 100,000 sockets (25,000 established connections, 25,000
// CLOSE_WAIT sockets and their orphans, held by sleep processes): the
// census alone, the census with the owners, the whole report. Needs root.
//
//	go test -run '^$' -bench SnapshotSource -benchtime 5x ./internal/session
func BenchmarkSnapshotSource(b *testing.B) {
	ns := testnet.New(b)
	ns.Populate(b, 4, 25000, 25000)
	d := ns.Dumper(b)
	src := &snapshotSource{opts: Options{}, procfs: owner.Proc("/proc"), dumper: d, ownNS: ns.Inode()}
	b.Run("census+owners", func(b *testing.B) {
		var c *engine.Census
		for b.Loop() {
			c = src.take(d)
		}
		if c.Err != "" || len(c.Owners) != 25000 {
			b.Fatalf("census: %s, %d owners", c.Err, len(c.Owners))
		}
	})
	for _, json := range []bool{false, true} {
		name := "report/text"
		if json {
			name = "report/json"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				eng := engine.New(engine.Config{})
				if _, err := src.run(context.Background(), eng); err != nil {
					b.Fatal(err)
				}
				r := eng.Snapshot().Report
				var err error
				if json {
					err = render.WriteReportJSON(io.Discard, r)
				} else {
					err = render.WriteReportText(io.Discard, r)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
