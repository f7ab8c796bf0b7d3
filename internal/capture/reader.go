package capture

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"github.com/klauspost/compress/zstd"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/event"
)

// Reader replays a capture.
type Reader struct {
	r       *bufio.Reader
	version uint32
	off     int64 // bytes of the file read so far
	blocks  int
	zdec    *zstd.Decoder
	raw     []byte
	payload []byte
}

// NewReader reads the capture header. It returns ErrNotCapture for
// anything that is not a capture, and a *VersionError for a format
// version it does not read.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	var hdr [headerLen]byte
	n, err := io.ReadFull(br, hdr[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the capture header: %w", err)
	}
	if n < len(magic) || string(hdr[:len(magic)]) != magic {
		return nil, ErrNotCapture
	}
	if n < headerLen {
		return nil, fmt.Errorf("%w: the file ends inside its header", ErrTruncated)
	}
	v := binary.LittleEndian.Uint32(hdr[len(magic):])
	if v < MinVersion || v > Version {
		return nil, &VersionError{Version: v}
	}
	zdec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxBlockRaw),
		zstd.WithDecoderMaxWindow(maxBlockRaw))
	if err != nil {
		return nil, fmt.Errorf("starting the decompressor: %w", err)
	}
	return &Reader{r: br, version: v, off: int64(headerLen), zdec: zdec}, nil
}

// Version is the capture's format version.
func (r *Reader) Version() uint32 { return r.version }

// Close releases the decompressor.
func (r *Reader) Close() { r.zdec.Close() }

// Replay feeds every record of the capture to in, in order, and returns
// nil after the End record. A capture that stops early (its writer was
// killed, its disk filled) has fed in every record of its complete
// blocks when Replay returns an error wrapping ErrTruncated; a damaged
// one gets an error wrapping ErrCorrupt, after the records before the
// damage. Neither is ever a panic, whatever the bytes.
//
// Replay checks ctx between blocks and returns its error once it is done.
func (r *Reader) Replay(ctx context.Context, in engine.Input) error {
	var st blockState
	st.reset()
	var ev event.Event
	ended := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		raw, err := r.next()
		if errors.Is(err, io.EOF) {
			if ended {
				return nil
			}
			if !st.started {
				return fmt.Errorf("%w: it holds no complete block", ErrTruncated)
			}
			return fmt.Errorf("%w after %d complete blocks, without its end record (the tracer was killed or its disk filled)",
				ErrTruncated, r.blocks)
		}
		if err != nil {
			return err
		}
		if ended {
			return fmt.Errorf("%w: data after the end record (block %d)", ErrCorrupt, r.blocks)
		}
		at := r.off - int64(blockHeaderLen+len(r.payload))
		ended, err = replayBlock(raw, &st, in, &ev)
		if err != nil {
			return fmt.Errorf("%w: block %d (byte %d): %w", ErrCorrupt, r.blocks, at, err)
		}
	}
}

// next reads and checks one block and returns its records: io.EOF at
// the end of the file (or of its data: a tail of zeros, which a crash
// can leave), ErrTruncated for a block cut short.
func (r *Reader) next() ([]byte, error) {
	var hdr [blockHeaderLen]byte
	n, err := io.ReadFull(r.r, hdr[:])
	switch {
	case errors.Is(err, io.EOF):
		return nil, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		if allZero(hdr[:n]) {
			return nil, io.EOF
		}
		return nil, r.truncated()
	case err != nil:
		return nil, fmt.Errorf("reading the capture: %w", err)
	}
	if allZero(hdr[:]) {
		return nil, io.EOF
	}
	plen := binary.LittleEndian.Uint32(hdr[0:])
	rawLen := binary.LittleEndian.Uint32(hdr[4:])
	sum := binary.LittleEndian.Uint32(hdr[8:])
	if plen > maxBlockRaw+maxBlockRaw/8 || rawLen > maxBlockRaw {
		return nil, fmt.Errorf("%w: block %d at byte %d claims %d bytes", ErrCorrupt, r.blocks, r.off, max(plen, rawLen))
	}
	// Grow the buffer as the bytes arrive, not by what the header claims:
	// a damaged length must not allocate more than the file holds.
	r.payload = r.payload[:0]
	for len(r.payload) < int(plen) {
		chunk := min(int(plen)-len(r.payload), 1<<20)
		r.payload = slices.Grow(r.payload, chunk)
		at := len(r.payload)
		r.payload = r.payload[:at+chunk]
		if _, err := io.ReadFull(r.r, r.payload[at:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, r.truncated()
			}
			return nil, fmt.Errorf("reading the capture: %w", err)
		}
	}
	if crc32.Update(crc32.Checksum(hdr[:8], castagnoli), castagnoli, r.payload) != sum {
		return nil, fmt.Errorf("%w: block %d at byte %d fails its checksum", ErrCorrupt, r.blocks, r.off)
	}
	raw, err := r.zdec.DecodeAll(r.payload, r.raw[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: block %d at byte %d: %w", ErrCorrupt, r.blocks, r.off, err)
	}
	if len(raw) != int(rawLen) {
		return nil, fmt.Errorf("%w: block %d at byte %d holds %d bytes, its header says %d", ErrCorrupt, r.blocks, r.off, len(raw), rawLen)
	}
	r.raw = raw
	r.off += int64(blockHeaderLen) + int64(plen)
	r.blocks++
	return raw, nil
}

func (r *Reader) truncated() error {
	return fmt.Errorf("%w after %d complete blocks: the last block is cut short (the tracer was killed or its disk filled)",
		ErrTruncated, r.blocks)
}

func allZero(p []byte) bool { return len(bytes.Trim(p, "\x00")) == 0 }
