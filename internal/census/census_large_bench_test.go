package census_test

import (
	"testing"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/testutil/testnet"
)

// BenchmarkCensusLarge dumps a namespace holding 100,000 sockets (25,000
// established connections, both ends, and 25,000 whose client closed: a
// CLOSE_WAIT socket and a FIN_WAIT2 orphan each), every state, with and
// without tcp_info: the census behind `tcptrace --snapshot`. Needs root.
//
//	go test -run '^$' -bench CensusLarge -benchtime 5x ./internal/census
func BenchmarkCensusLarge(b *testing.B) {
	const established, closeWait = 25000, 25000
	ns := testnet.New(b)
	ns.Populate(b, 4, established, closeWait)
	d := ns.Dumper(b)
	want := 2*established + 2*closeWait
	for _, bc := range []struct {
		name string
		q    census.Query
	}{
		{"all", census.Query{States: census.AllStates}},
		{"all+info", census.Query{States: census.AllStates, Info: true}},
		{"all-but-close-wait+close-wait-info", census.Query{States: census.AllStates &^ census.Mask(event.CloseWait)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var buf []census.Socket
			var err error
			for b.Loop() {
				if buf, err = d.AppendQuery(buf[:0], bc.q); err != nil {
					b.Fatal(err)
				}
				if bc.q.States&census.Mask(event.CloseWait) == 0 {
					if buf, err = d.AppendQuery(buf, census.Query{States: census.Mask(event.CloseWait), Info: true}); err != nil {
						b.Fatal(err)
					}
				}
			}
			if len(buf) < want {
				b.Fatalf("got %d sockets, want at least %d", len(buf), want)
			}
			b.ReportMetric(float64(len(buf)), "sockets")
		})
	}
}
