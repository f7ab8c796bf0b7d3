// Package capture records the stream a tcptrace source feeds the engine
// (engine.Input: Start, Event, Census, Flush, Tick, End) to a file, and
// replays such a file into an engine.Input, so that `tcptrace -r` runs
// the very engine the live trace ran, on the very same stream, and gives
// the same report without root or BPF.
//
// # The format (version 1)
//
// A capture is a 12-byte header, then blocks:
//
//	header  "\x89TCPCAP\n" (8 bytes), format version (uint32, little endian)
//	block   payload length (uint32 LE), raw length (uint32 LE),
//	        CRC-32C of the 8 length bytes and the payload (uint32 LE),
//	        payload: one zstd frame holding raw-length bytes of records
//
// Every block decodes on its own: the tables and deltas of the record
// encoding restart at each block. A block is written once it holds about
// 1 MiB of records, at the first tick 2 s after it began, and at the end,
// so a capture whose writer was killed, or whose disk filled, is readable
// up to its last complete block, which is at most about 2 seconds of
// trace behind.
//
// The records are the engine's input, after decoding: domain events
// (event.Event), not the kernel's wire records, so a change of the BPF
// record layout does not change the format. See records.go and event.go
// for their encoding. The first record is the Start (host facts, options,
// scope), the last the End.
//
// A reader reads every version from MinVersion to Version. Any change to
// what is recorded, or how, is a new version, and the reader keeps
// decoding the old ones (testdata holds a capture of each).
package capture

import (
	"errors"
	"fmt"
	"hash/crc32"
)

// Version is the format version this package writes.
const Version = 1

// MinVersion is the oldest format version this package reads.
const MinVersion = 1

const (
	magic          = "\x89TCPCAP\n"
	headerLen      = len(magic) + 4
	blockHeaderLen = 12
	// blockTarget is the raw size at which a block is written.
	blockTarget = 1 << 20
	// blockAgeNs is the stream time after which a tick closes a block.
	blockAgeNs = 2_000_000_000
	// maxBlockRaw bounds a block's raw size (a census of many sockets
	// can exceed blockTarget on its own); a reader refuses more.
	maxBlockRaw = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors a Reader returns, to test with errors.Is.
var (
	// ErrNotCapture: the file does not start with a capture header.
	ErrNotCapture = errors.New("not a tcptrace capture")
	// ErrCorrupt: a block or a record is damaged.
	ErrCorrupt = errors.New("the capture is corrupt")
	// ErrTruncated: the capture ends without its end record, after the
	// records the reader did deliver.
	ErrTruncated = errors.New("the capture ends abruptly")
)

// VersionError is a capture in a format version this reader does not
// read.
type VersionError struct{ Version uint32 }

func (e *VersionError) Error() string {
	if e.Version > Version {
		return fmt.Sprintf("capture format version %d is newer than this tcptrace reads (%d to %d): replay it with a newer tcptrace",
			e.Version, MinVersion, Version)
	}
	return fmt.Sprintf("capture format version %d is no longer supported (this tcptrace reads %d to %d)", e.Version, MinVersion, Version)
}
