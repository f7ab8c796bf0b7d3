package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/testutil/eventtest"
	"github.com/tcptrace/tcptrace/internal/report"
)

// record is one call on an engine.Input, deep-copied.
type record struct {
	Start  *engine.Start
	Event  *event.Event
	Census *engine.Census
	Flush  *uint64
	Tick   *engine.Tick
	NS     *engine.Namespace
	End    *engine.End
}

// recorder is an engine.Input that keeps copies of what it is fed.
type recorder struct{ recs []record }

func (r *recorder) Start(s *engine.Start) {
	c := *s
	c.Args, c.Command = slices.Clone(s.Args), slices.Clone(s.Command)
	c.Scope.ReplayFilters = slices.Clone(s.Scope.ReplayFilters)
	c.Sysctl, c.Netstat = cloneMap(s.Sysctl), cloneMap(s.Netstat)
	c.Started = s.Started.UTC()
	r.recs = append(r.recs, record{Start: &c})
}

func (r *recorder) Event(ev *event.Event) {
	c := *ev
	r.recs = append(r.recs, record{Event: &c})
}

func (r *recorder) Census(c *engine.Census) {
	x := *c
	x.Sockets = slices.Clone(c.Sockets)
	x.Owners = cloneMap(c.Owners)
	r.recs = append(r.recs, record{Census: &x})
}

func (r *recorder) Flush(nowNs uint64) { r.recs = append(r.recs, record{Flush: &nowNs}) }

func (r *recorder) Tick(t *engine.Tick) {
	x := *t
	x.Netstat = cloneMap(t.Netstat)
	r.recs = append(r.recs, record{Tick: &x})
}

func (r *recorder) Namespace(n *engine.Namespace) {
	x := *n
	x.Sysctl, x.Netstat = cloneMap(n.Sysctl), cloneMap(n.Netstat)
	r.recs = append(r.recs, record{NS: &x})
}

func (r *recorder) End(e *engine.End) {
	x := *e
	x.Netstat = cloneMap(e.Netstat)
	if e.Command != nil {
		c := *e.Command
		c.Argv = slices.Clone(c.Argv)
		x.Command = &c
	}
	r.recs = append(r.recs, record{End: &x})
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return nil
	}
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// feed sends recs to in.
func feed(in engine.Input, recs []record) {
	for _, r := range recs {
		switch {
		case r.Start != nil:
			in.Start(r.Start)
		case r.Event != nil:
			in.Event(r.Event)
		case r.Census != nil:
			in.Census(r.Census)
		case r.Flush != nil:
			in.Flush(*r.Flush)
		case r.Tick != nil:
			in.Tick(r.Tick)
		case r.NS != nil:
			in.Namespace(r.NS)
		case r.End != nil:
			in.End(r.End)
		}
	}
}

// write records recs into a capture.
func write(t testing.TB, recs []record) []byte { return writeBlocks(t, recs, blockTarget) }

// writeBlocks records recs in blocks of about target raw bytes.
func writeBlocks(t testing.TB, recs []record, target int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.target = target
	feed(w, recs)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// replay reads a capture back.
func replay(data []byte) ([]record, error) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var got recorder
	err = r.Replay(context.Background(), &got)
	return got.recs, err
}

func compare(t *testing.T, got, want []record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("replayed %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, show(got[i]), show(want[i]))
		}
	}
}

func show(r record) string {
	switch {
	case r.Start != nil:
		return fmt.Sprintf("start %+v", *r.Start)
	case r.Event != nil:
		return fmt.Sprintf("event %+v", *r.Event)
	case r.Census != nil:
		return fmt.Sprintf("census %+v", *r.Census)
	case r.Flush != nil:
		return fmt.Sprintf("flush %d", *r.Flush)
	case r.Tick != nil:
		return fmt.Sprintf("tick %+v", *r.Tick)
	case r.NS != nil:
		return fmt.Sprintf("namespace %+v", *r.NS)
	}
	return fmt.Sprintf("end %+v", *r.End)
}

// filler sets every field of a value to something not zero, so that a
// field the codec forgets (one added to the stream later, say) shows.
type filler struct{ rng *rand.Rand }

func (f *filler) fill(v reflect.Value) {
	switch x := v.Addr().Interface().(type) {
	case *time.Time:
		*x = time.Unix(1_700_000_000+f.rng.Int64N(1e6), f.rng.Int64N(1e9)).UTC()
		return
	case *netip.AddrPort:
		*x = netip.AddrPortFrom(f.addr(), uint16(1+f.rng.IntN(65535)))
		return
	case *netip.Addr:
		*x = f.addr()
		return
	case *[16]byte:
		copy(x[:], fmt.Sprintf("comm%d", f.rng.IntN(1000)))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				f.fill(v.Field(i))
			}
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		f.fill(v.Elem())
	case reflect.Slice:
		n := 1 + f.rng.IntN(3)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			f.fill(s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 1 + f.rng.IntN(3) {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			f.fill(k)
			f.fill(e)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d <&\"é", f.rng.IntN(1000)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := min(v.Type().Bits(), 32) // counts and settings fit in 32 bits
		v.SetInt(1 + f.rng.Int64N(1<<(bits-2)))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		bits := v.Type().Bits()
		v.SetUint(1 + f.rng.Uint64N(1<<(bits-1)))
	case reflect.Array:
		for i := range v.Len() {
			f.fill(v.Index(i))
		}
	default:
		panic("filler: no rule for " + v.Type().String())
	}
}

func (f *filler) addr() netip.Addr {
	switch f.rng.IntN(3) {
	case 0:
		return netip.AddrFrom4([4]byte{10, 0, byte(f.rng.IntN(256)), byte(f.rng.IntN(256))})
	case 1:
		var b [16]byte
		b[0], b[1], b[15] = 0xfd, 0x01, byte(f.rng.IntN(256))
		return netip.AddrFrom16(b)
	}
	var b [16]byte
	b[0], b[1], b[15] = 0xfe, 0x80, 1
	return netip.AddrFrom16(b).WithZone("eth0")
}

func fillNew[T any](f *filler) *T {
	p := new(T)
	f.fill(reflect.ValueOf(p).Elem())
	return p
}

// TestEveryFieldRoundTrips fills every field of every record with
// something and checks it comes back: a field added to the engine's
// input later fails here until the format records it (as a new version).
func TestEveryFieldRoundTrips(t *testing.T) {
	f := &filler{rng: rand.New(rand.NewPCG(1, 2))}
	var recs []record
	recs = append(recs, record{Start: fillNew[engine.Start](f)})
	var last *event.Event
	for i := range 200 {
		ev := fillNew[event.Event](f)
		if i%3 == 0 && last != nil { // and some sockets seen again
			ev.Sock = last.Sock
		}
		last = ev
		recs = append(recs, record{Event: ev})
		if i%50 == 0 {
			recs = append(recs, record{Census: fillNew[engine.Census](f)}, record{Tick: fillNew[engine.Tick](f)},
				record{NS: fillNew[engine.Namespace](f)})
			n := f.rng.Uint64()
			recs = append(recs, record{Flush: &n})
		}
	}
	// Empty is not nil: both must come back as they were.
	empty := &engine.Census{Sockets: []census.Socket{}, Owners: map[uint64]report.Owner{}}
	emptyTick := &engine.Tick{Netstat: map[string]uint64{}}
	recs = append(recs, record{Census: empty}, record{Census: &engine.Census{}}, record{Tick: emptyTick})
	end := fillNew[engine.End](f)
	end.Command.Argv = []string{}
	recs = append(recs, record{End: end})
	compare(t, mustReplay(t, write(t, recs)), recs)
}

func mustReplay(t *testing.T, data []byte) []record {
	t.Helper()
	got, err := replay(data)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	return got
}

// storm is a stream like a connection storm's: connections through the
// eventtest builder, with kernel-like socket addresses, ticks with
// counters, censuses, and the TIME_WAIT ends a minute later.
func storm(conns int) []record {
	rng := rand.New(rand.NewPCG(3, 4))
	start := &engine.Start{Mode: engine.ModeTrace, Version: "test", Kernel: "6.18.0", HZ: 250, CPUs: 2,
		StartNs: 1_000 * eventtest.Ms, Started: time.Unix(1_800_000_000, 0).UTC(), Interval: time.Second,
		Scope: report.Scope{NetNS: eventtest.NetNS}, OwnNetNS: eventtest.NetNS, Threshold: 30 * time.Second,
		MaxSockets: 1_000_000, Sysctl: map[string]string{"net.ipv4.tcp_fin_timeout": "60"},
		Netstat: map[string]uint64{"TW": 1, "TWKilled": 0}}
	recs := []record{{Start: start}}
	var seq eventtest.Seq
	for n := range conns {
		seq.Connection(start.StartNs+uint64(n)*eventtest.Ms/30, uint64(n), 30000+n%28000, n%2 == 0)
	}
	// Kernel addresses: slab objects, reused.
	base := uint64(0xffff888100000000)
	addr := map[uint64]uint64{}
	next := 0
	tick := start.StartNs + uint64(time.Second)
	tw := uint64(0)
	for i := range seq.Evs {
		ev := seq.Evs[i]
		a, ok := addr[ev.Sock]
		if !ok {
			a = base + uint64(rng.IntN(1<<16))*2304
			addr[ev.Sock] = a
			next++
		}
		ev.Sock = a
		ev.CPU = uint16(i % 2)
		for ev.TimeNs >= tick {
			recs = append(recs, record{Tick: &engine.Tick{NowNs: tick, Netstat: map[string]uint64{"TW": tw, "TWKilled": 0}}})
			if tick%(2*uint64(time.Second)) == 0 {
				recs = append(recs, record{Census: &engine.Census{TakenNs: tick, NetNS: eventtest.NetNS,
					States: census.Mask(event.CloseWait), Sockets: []census.Socket{}}})
			}
			tick += uint64(time.Second)
		}
		recs = append(recs, record{Event: &ev})
		if ev.Kind == event.TimerStart {
			tw++
		}
	}
	recs = append(recs, record{End: &engine.End{EndNs: tick, Netstat: map[string]uint64{"TW": tw}}})
	return recs
}

func TestStormRoundTrips(t *testing.T) {
	recs := storm(20000)
	data := write(t, recs)
	compare(t, mustReplay(t, data), recs)
	t.Logf("%d records, %d bytes: %.2f bytes per record", len(recs), len(data), float64(len(data))/float64(len(recs)))
}

func TestBadFiles(t *testing.T) {
	good := write(t, storm(3000))
	if n := bytes.Count(good, []byte{}); n < 2 {
		t.Fatal("empty capture")
	}
	versioned := func(v uint32) []byte {
		b := slices.Clone(good)
		b[len(magic)] = byte(v)
		return b
	}
	flip := func(at int) []byte {
		b := slices.Clone(good)
		b[at] ^= 0x55
		return b
	}
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrNotCapture},
		{"text", []byte("hello, this is not a capture\n"), ErrNotCapture},
		{"pcap", []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0}, ErrNotCapture},
		{"header cut", good[:headerLen-2], ErrTruncated},
		{"header only", good[:headerLen], ErrTruncated},
		{"block header cut", good[:headerLen+5], ErrTruncated},
		{"block cut", good[:headerLen+40], ErrTruncated},
		{"last block cut", good[:len(good)-3], ErrTruncated},
		{"payload flipped", flip(headerLen + blockHeaderLen + 10), ErrCorrupt},
		{"length flipped", flip(headerLen + 1), nil}, // corrupt or truncated, never a panic
		{"checksum flipped", flip(headerLen + 9), ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := replay(c.data)
			if err == nil {
				t.Fatal("no error")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
	for _, v := range []uint32{0, Version + 1} {
		_, err := replay(versioned(v))
		var ve *VersionError
		if !errors.As(err, &ve) || ve.Version != v {
			t.Errorf("version %d: error %v, want a VersionError", v, err)
		}
	}
}

// TestTruncatedKeepsCompleteBlocks: a capture cut anywhere replays every
// record of the blocks before the cut, and says it was cut.
func TestTruncatedKeepsCompleteBlocks(t *testing.T) {
	recs := storm(20000)
	data := writeBlocks(t, recs, 64<<10)
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var ends []int // offsets where blocks end
	for off := headerLen; off < len(data); {
		plen := int(uint32(data[off]) | uint32(data[off+1])<<8 | uint32(data[off+2])<<16 | uint32(data[off+3])<<24)
		off += blockHeaderLen + plen
		ends = append(ends, off)
	}
	r.Close()
	if len(ends) < 3 {
		t.Fatalf("%d blocks: want a capture of several", len(ends))
	}
	// Cut inside the third block: the first two replay.
	cut := data[:ends[1]+100]
	got, err := replay(cut)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("error %v, want ErrTruncated", err)
	}
	whole, _ := replay(data[:ends[1]])
	if len(got) == 0 || len(got) != len(whole) {
		t.Fatalf("cut capture replayed %d records, the two complete blocks hold %d", len(got), len(whole))
	}
	compare(t, got, recs[:len(got)])
	// A tail of zeros (what a crash can leave) is the end of the data.
	zeros := append(slices.Clone(data[:ends[1]]), make([]byte, 4096)...)
	if got, err := replay(zeros); !errors.Is(err, ErrTruncated) || len(got) != len(whole) {
		t.Fatalf("zero tail: %d records, %v", len(got), err)
	}
}

// failingWriter fails after n bytes, like a full disk.
type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errors.New("no space left on device")
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriteErrorStopsRecording(t *testing.T) {
	recs := storm(20000)
	w := NewWriter(&failingWriter{n: 300 << 10})
	calls := 0
	w.OnError = func(error) { calls++ }
	feed(w, recs)
	err := w.Close()
	if err == nil || calls != 1 || !w.Failed() {
		t.Fatalf("Close: %v, OnError called %d times; want the write error, once", err, calls)
	}
}

// frame wraps a block's raw bytes in a header and one well-formed block,
// as a writer would (for blocks no writer would write).
func frame(raw []byte) []byte {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.started = true
	w.begin()
	w.queue <- raw
	_ = w.Close()
	return buf.Bytes()
}

// block builds a block's raw bytes from its columns: tag, ref, mask,
// time, states, port, field.
func block(columns ...[]byte) []byte {
	var c cols
	for i, e := range c.all() {
		if i < len(columns) {
			e.b = columns[i]
		}
	}
	return c.appendTo(nil)
}
