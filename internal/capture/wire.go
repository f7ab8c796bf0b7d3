package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"time"
)

// errShort is a record that ends before its last field: the block is
// corrupt (a complete block's checksum matched, so its writer wrote it
// that way, or the file was forged).
var errShort = errors.New("record ends early")

// enc appends primitive values to a byte slice.
type enc struct{ b []byte }

func (e *enc) byte(v byte)              { e.b = append(e.b, v) }
func (e *enc) uvarint(v uint64)         { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)           { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bool(v bool)              { e.byte(b2u8(v)) }
func (e *enc) raw(p []byte)             { e.b = append(e.b, p...) }
func (e *enc) duration(d time.Duration) { e.varint(int64(d)) }

func (e *enc) string(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *enc) strings(ss []string) {
	// nil and empty differ (Start.Command nil: no command).
	if ss == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(ss)) + 1)
	for _, s := range ss {
		e.string(s)
	}
}

func (e *enc) uint64s(v []uint64) {
	if v == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(v)) + 1)
	for _, x := range v {
		e.uvarint(x)
	}
}

func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.byte(0)
		return
	}
	e.byte(1)
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
}

// stringMap writes m in key order, so that a capture is a function of
// its stream alone; nil and empty differ.
func (e *enc) stringMap(m map[string]string) {
	if m == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(m)) + 1)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e.string(k)
		e.string(m[k])
	}
}

// addr writes an address in full: its form, then its bytes.
func (e *enc) addr(a netip.Addr) {
	switch {
	case !a.IsValid():
		e.byte(0)
	case a.Is4():
		e.byte(4)
		b := a.As4()
		e.raw(b[:])
	case a.Zone() == "":
		e.byte(6)
		b := a.As16()
		e.raw(b[:])
	default:
		e.byte(7)
		b := a.As16()
		e.raw(b[:])
		e.string(a.Zone())
	}
}

func b2u8(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// dec reads what enc wrote. The first error sticks: later reads return
// zero values, and err says what went wrong, so a decoder checks once per
// record instead of after every field.
type dec struct {
	b   []byte
	off int
	err error
}

func (d *dec) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *dec) left() int { return len(d.b) - d.off }

func (d *dec) byte() byte {
	if d.off >= len(d.b) {
		d.fail(errShort)
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.off += n
	return v
}

func (d *dec) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.off += n
	return v
}

// uint32 reads a uvarint that must fit in 32 bits.
func (d *dec) uint32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail(fmt.Errorf("value %d out of range", v))
		return 0
	}
	return uint32(v)
}

func (d *dec) uint16() uint16 {
	v := d.uvarint()
	if v > math.MaxUint16 {
		d.fail(fmt.Errorf("value %d out of range", v))
		return 0
	}
	return uint16(v)
}

// int reads a varint that must fit in an int of 32 bits, enough for every
// count and setting tcptrace records.
func (d *dec) int() int {
	v := d.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail(fmt.Errorf("value %d out of range", v))
		return 0
	}
	return int(v)
}

func (d *dec) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail(errors.New("bad boolean"))
	return false
}

func (d *dec) duration() time.Duration { return time.Duration(d.varint()) }

func (d *dec) raw(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > d.left() {
		d.fail(errShort)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

// count reads a length and checks that at least min bytes per element
// remain, so a forged length cannot make the decoder allocate more than
// the block holds.
func (d *dec) count(min int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(d.left()/max(min, 1)) {
		d.fail(errShort)
		return 0
	}
	return int(n)
}

// optCount reads the length of a list or map that may be absent (nil),
// written as length+1, or 0 for nil; it returns -1 for nil.
func (d *dec) optCount(min int) int {
	n := d.uvarint()
	if d.err != nil || n == 0 {
		return -1
	}
	if n-1 > uint64(d.left()/max(min, 1)) {
		d.fail(errShort)
		return -1
	}
	return int(n - 1)
}

func (d *dec) string() string { return string(d.raw(d.count(1))) }

func (d *dec) strings() []string {
	n := d.optCount(1)
	if n < 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.string()
	}
	return out
}

func (d *dec) uint64s() []uint64 {
	n := d.optCount(1)
	if n < 0 {
		return nil
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = d.uvarint()
	}
	return out
}

func (d *dec) time() time.Time {
	if !d.bool() {
		return time.Time{}
	}
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.fail(errors.New("bad time"))
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec))
}

func (d *dec) stringMap() map[string]string {
	n := d.optCount(2)
	if n < 0 {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := d.string()
		m[k] = d.string()
	}
	return m
}

func (d *dec) addr() netip.Addr {
	switch d.byte() {
	case 0:
		return netip.Addr{}
	case 4:
		return netip.AddrFrom4([4]byte(d.raw4()))
	case 6:
		return netip.AddrFrom16([16]byte(d.raw16()))
	case 7:
		a := netip.AddrFrom16([16]byte(d.raw16()))
		zone := d.string()
		if zone == "" {
			d.fail(errors.New("empty zone"))
		}
		return a.WithZone(zone)
	}
	d.fail(errors.New("bad address form"))
	return netip.Addr{}
}

func (d *dec) raw4() []byte {
	if p := d.raw(4); p != nil {
		return p
	}
	return make([]byte, 4)
}

func (d *dec) raw16() []byte {
	if p := d.raw(16); p != nil {
		return p
	}
	return make([]byte, 16)
}

func addrPort(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
