package capture

import (
	"bytes"
	"context"
	"testing"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
)

// discard is an engine.Input that reads what it is fed and keeps nothing.
type discard struct{ n int }

func (d *discard) Start(*engine.Start)   { d.n++ }
func (d *discard) Event(*event.Event)    { d.n++ }
func (d *discard) Census(*engine.Census) { d.n++ }
func (d *discard) Flush(uint64)          { d.n++ }
func (d *discard) Tick(*engine.Tick)     { d.n++ }
func (d *discard) End(*engine.End)       { d.n++ }

func (d *discard) Namespace(*engine.Namespace) { d.n++ }

// FuzzReplay: no bytes make the reader panic or hang; `go test` runs the
// seeds (a real capture, cut and damaged), `make fuzz` explores.
func FuzzReplay(f *testing.F) {
	good := write(f, storm(200))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:headerLen+blockHeaderLen])
	for _, at := range []int{headerLen, headerLen + 4, headerLen + 8, headerLen + blockHeaderLen + 3, len(good) - 5} {
		b := bytes.Clone(good)
		b[at] ^= 0xff
		f.Add(b)
	}
	// Well-framed blocks whose records are damaged: the checksum passes,
	// the record decoder must catch it.
	for _, raw := range [][]byte{
		block([]byte{tagEvent | refNew}, []byte{0}, []byte{0}, []byte{0}, []byte{0}),
		block([]byte{tagStart, tagEvent | refSlot}, []byte{5}, nil, nil, nil, nil, []byte{0}),
		block([]byte{tagStart, tagEvent | 3}, nil, nil, nil, nil, nil, []byte{0}),
		block([]byte{tagStart, tagOtherEvent}, []byte{9, refNew, 0}, []byte{0}, []byte{0}, []byte{0}, nil, []byte{0}),
		block([]byte{tagStart}, nil, nil, nil, nil, nil, []byte{200}),
		block([]byte{tagCensus}, nil, nil, nil, nil, nil, []byte{1, 0}),
		block([]byte{0x7f}),
		{1, 2, 3},
	} {
		f.Add(frame(raw))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		defer r.Close()
		_ = r.Replay(context.Background(), &discard{})
	})
}
