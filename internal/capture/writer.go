package capture

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
)

// queuedBlocks is how many encoded blocks wait for the compressor at
// most. When the disk is slower than the trace, the reader then waits
// (and the kernel counts what the ring could not hold) rather than the
// capture growing in memory.
const queuedBlocks = 4

// Writer records a stream to a capture file. It is an engine.Input, put
// beside the engine with engine.Tee so that it records exactly what the
// engine was fed. The goroutine that feeds the engine only encodes
// records into a buffer; compressing and writing a full block happens on
// a goroutine of the Writer's own.
//
// When writing fails (disk full, I/O error), the Writer stops recording,
// calls OnError once, and ignores the rest of the stream: tracing goes
// on, and the capture stays readable up to its last complete block.
type Writer struct {
	// OnError, if set before the first record, is called once, from the
	// Writer's goroutine, with the first write error.
	OnError func(error)

	st      blockState
	cols    cols
	target  int    // raw bytes at which a block is written (blockTarget)
	nowNs   uint64 // the latest time the stream told
	openNs  uint64 // nowNs when the current block got its first record
	ended   bool
	started bool
	closed  bool

	out    io.Writer
	queue  chan []byte
	free   chan []byte
	done   chan struct{}
	once   sync.Once
	failed atomic.Bool
	err    error // the first write error; read after done

	events  uint64
	raw     uint64
	written atomic.Uint64
	blocks  atomic.Uint64
}

// NewWriter returns a Writer that writes a capture to out. Close must be
// called to write the last block.
func NewWriter(out io.Writer) *Writer {
	w := &Writer{out: out, queue: make(chan []byte, queuedBlocks), free: make(chan []byte, queuedBlocks+1),
		done: make(chan struct{}), target: blockTarget}
	w.st.reset()
	return w
}

func (w *Writer) run() {
	defer close(w.done)
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false))
	if err != nil {
		w.fail(fmt.Errorf("starting the compressor: %w", err))
	}
	var frame []byte
	if !w.failed.Load() {
		var hdr [headerLen]byte
		copy(hdr[:], magic)
		binary.LittleEndian.PutUint32(hdr[len(magic):], Version)
		w.write(hdr[:])
	}
	for raw := range w.queue {
		if !w.failed.Load() {
			frame = append(frame[:0], make([]byte, blockHeaderLen)...)
			frame = zenc.EncodeAll(raw, frame)
			payload := frame[blockHeaderLen:]
			binary.LittleEndian.PutUint32(frame[0:], uint32(len(payload)))
			binary.LittleEndian.PutUint32(frame[4:], uint32(len(raw)))
			crc := crc32.Update(crc32.Checksum(frame[:8], castagnoli), castagnoli, payload)
			binary.LittleEndian.PutUint32(frame[8:], crc)
			if w.write(frame) {
				w.blocks.Add(1)
			}
		}
		select {
		case w.free <- raw[:0]:
		default:
		}
	}
	if zenc != nil {
		_ = zenc.Close()
	}
}

func (w *Writer) write(p []byte) bool {
	if w.failed.Load() {
		return false
	}
	n, err := w.out.Write(p)
	w.written.Add(uint64(n))
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.fail(err)
		return false
	}
	return true
}

func (w *Writer) fail(err error) {
	if w.failed.Swap(true) {
		return
	}
	w.err = err
	if w.OnError != nil {
		w.OnError(err)
	}
}

// begin makes room for a record and starts the writer goroutine with the
// first one. It reports false once writing has failed.
func (w *Writer) begin() bool {
	w.once.Do(func() { go w.run() })
	if w.failed.Load() || w.ended {
		return false
	}
	if w.cols.size() == 0 {
		w.openNs = w.nowNs
	}
	return true
}

// flush hands the current block to the writer goroutine.
func (w *Writer) flush() {
	n := w.cols.size()
	if n == 0 {
		return
	}
	var raw []byte
	select {
	case raw = <-w.free:
	default:
		raw = make([]byte, 0, n+64)
	}
	raw = w.cols.appendTo(raw)
	w.raw += uint64(len(raw))
	w.queue <- raw
	w.cols.reset()
	w.st.reset()
}

// record writes a record of the non-event kinds: its tag, and its body
// after its length.
func (w *Writer) record(tag byte, body func(*enc)) {
	w.cols.tag.byte(tag)
	var e enc
	body(&e)
	w.cols.field.uvarint(uint64(len(e.b)))
	w.cols.field.raw(e.b)
	if w.cols.size() >= w.target {
		w.flush()
	}
}

// Start implements engine.Input.
func (w *Writer) Start(s *engine.Start) {
	w.nowNs = max(w.nowNs, s.StartNs)
	if !w.begin() {
		return
	}
	w.started = true
	w.record(tagStart, func(e *enc) { e.start(&w.st, s) })
}

// Event implements engine.Input.
func (w *Writer) Event(ev *event.Event) {
	if w.failed.Load() || w.ended {
		return
	}
	if len(w.cols.tag.b) == 0 {
		w.begin()
	}
	w.nowNs = max(w.nowNs, ev.TimeNs)
	w.cols.event(&w.st.ev, &w.st.tab, ev)
	w.events++
	if w.events%1024 == 0 && w.cols.size() >= w.target {
		w.flush()
	}
}

// Census implements engine.Input.
func (w *Writer) Census(c *engine.Census) {
	w.nowNs = max(w.nowNs, c.TakenNs)
	if !w.begin() {
		return
	}
	w.record(tagCensus, func(e *enc) { e.census(&w.st, c) })
}

// Flush implements engine.Input.
func (w *Writer) Flush(nowNs uint64) {
	if nowNs != ^uint64(0) {
		w.nowNs = max(w.nowNs, nowNs)
	}
	if !w.begin() {
		return
	}
	w.record(tagFlush, func(e *enc) { e.uvarint(nowNs) })
}

// Tick implements engine.Input. A block that has been open for
// blockAgeNs of stream time is written at a tick, so that a capture cut
// short loses little.
func (w *Writer) Tick(t *engine.Tick) {
	w.nowNs = max(w.nowNs, t.NowNs)
	if !w.begin() {
		return
	}
	w.record(tagTick, func(e *enc) { e.tick(&w.st, t) })
	if w.nowNs-w.openNs >= blockAgeNs {
		w.flush()
	}
}

// Namespace implements engine.Input.
func (w *Writer) Namespace(n *engine.Namespace) {
	w.nowNs = max(w.nowNs, n.TakenNs)
	if !w.begin() {
		return
	}
	w.record(tagNamespace, func(e *enc) { e.namespace(&w.st, n) })
}

// End implements engine.Input: it writes the End record and the last
// block. Close still must be called.
func (w *Writer) End(x *engine.End) {
	w.nowNs = max(w.nowNs, x.EndNs)
	if !w.begin() {
		return
	}
	w.record(tagEnd, func(e *enc) { e.end(&w.st, x) })
	w.flush()
	w.ended = true
}

// Close writes what is buffered and waits until it is written. It
// returns the first write error. Closing a Writer that got no Start
// writes nothing at all (Recorded reports false).
func (w *Writer) Close() error {
	if !w.started {
		return nil
	}
	if !w.closed {
		w.closed = true
		if !w.failed.Load() {
			w.flush()
		}
		w.ended = true
		close(w.queue)
		<-w.done
	}
	return w.err
}

// Recorded reports whether the stream's Start reached the writer.
func (w *Writer) Recorded() bool { return w.started }

// Stats says how much the writer recorded so far.
type Stats struct {
	// Events counts the events encoded; RawBytes the encoded records
	// handed to the compressor; Bytes the bytes written to the file;
	// Blocks the complete blocks written.
	Events, RawBytes, Bytes, Blocks uint64
}

// Stats returns the writer's counts. After Close they are final.
func (w *Writer) Stats() Stats {
	return Stats{Events: w.events, RawBytes: w.raw, Bytes: w.written.Load(), Blocks: w.blocks.Load()}
}

// Failed reports whether writing has failed.
func (w *Writer) Failed() bool { return w.failed.Load() }

var _ engine.Input = (*Writer)(nil)
