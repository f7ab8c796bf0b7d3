package capture

import (
	"io"
	"testing"

	"github.com/tcptrace/tcptrace/internal/event"
)

// BenchmarkWriterEvent is what -w adds to the reader's hot path per
// event: encoding into the block's columns, plus (on the Writer's own
// goroutine, counted here because b.N covers it) compressing and writing
// to io.Discard.
func BenchmarkWriterEvent(b *testing.B) {
	recs := storm(20000)
	evs := stormEvents(recs)
	w := NewWriter(io.Discard)
	w.Start(recs[0].Start)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ev := &evs[i%len(evs)]
		w.Event(ev)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	st := w.Stats()
	b.ReportMetric(float64(st.Bytes)/float64(st.Events), "bytes/event")
}

// BenchmarkEncodeEvent is the encoding alone, the part that runs on the
// goroutine reading the kernel.
func BenchmarkEncodeEvent(b *testing.B) {
	evs := stormEvents(storm(20000))
	var st blockState
	st.reset()
	var c cols
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%len(evs) == 0 {
			c.reset()
			st.reset()
		}
		c.event(&st.ev, &st.tab, &evs[i%len(evs)])
	}
}

// BenchmarkReplayEvent is the decoder's cost per event, decompression
// included.
func BenchmarkReplayEvent(b *testing.B) {
	data := write(b, storm(20000))
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		recs, err := replay(data)
		if err != nil {
			b.Fatal(err)
		}
		n += len(recs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
}

// stormEvents returns the events of a storm's records.
func stormEvents(recs []record) []event.Event {
	var evs []event.Event
	for _, r := range recs {
		if r.Event != nil {
			evs = append(evs, *r.Event)
		}
	}
	return evs
}
