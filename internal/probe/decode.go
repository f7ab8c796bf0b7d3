package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/tcptrace/tcptrace/internal/event"
)

// RecordSize is the size of a record's fixed part (struct tt_event); the
// parts its ext field names follow it.
const RecordSize = int(unsafe.Sizeof(sockstateTtEvent{}))

// Sizes of the optional parts (struct tt_addr6, struct tt_comm).
const (
	addr6Size = int(unsafe.Sizeof(sockstateTtAddr6{}))
	commSize  = int(unsafe.Sizeof(sockstateTtComm{}))
)

// Field offsets in struct tt_event, taken from the generated type so that a
// change to bpf/tcptrace.h that is not followed here fails to compile or
// fails TestDecodeLayout, instead of decoding garbage. Constants, so that
// Decode's loads need no bounds checks past its length check.
const (
	offTs      = unsafe.Offsetof(sockstateTtEvent{}.TsNs)
	offSk      = unsafe.Offsetof(sockstateTtEvent{}.Skaddr)
	offPid     = unsafe.Offsetof(sockstateTtEvent{}.Pid)
	offNetns   = unsafe.Offsetof(sockstateTtEvent{}.Netns)
	offDrops   = unsafe.Offsetof(sockstateTtEvent{}.Drops)
	offExpires = unsafe.Offsetof(sockstateTtEvent{}.Expires)
	offSaddr   = unsafe.Offsetof(sockstateTtEvent{}.Saddr)
	offDaddr   = unsafe.Offsetof(sockstateTtEvent{}.Daddr)
	offSport   = unsafe.Offsetof(sockstateTtEvent{}.Sport)
	offDport   = unsafe.Offsetof(sockstateTtEvent{}.Dport)
	offCPU     = unsafe.Offsetof(sockstateTtEvent{}.Cpu)
	offKind    = unsafe.Offsetof(sockstateTtEvent{}.Kind)
	offFamily  = unsafe.Offsetof(sockstateTtEvent{}.Family)
	offOld     = unsafe.Offsetof(sockstateTtEvent{}.Oldstate)
	offNew     = unsafe.Offsetof(sockstateTtEvent{}.Newstate)
	offFlags   = unsafe.Offsetof(sockstateTtEvent{}.Flags)
	offExt     = unsafe.Offsetof(sockstateTtEvent{}.Ext)
	off6Saddr  = unsafe.Offsetof(sockstateTtAddr6{}.Saddr)
	off6Daddr  = unsafe.Offsetof(sockstateTtAddr6{}.Daddr)
)

// recordSize is the size of a record whose ext field is ext.
func recordSize(ext byte) int {
	n := RecordSize
	if sockstateTtExt(ext)&sockstateTtExtTT_EXT_ADDR6 != 0 {
		n += addr6Size
	}
	if sockstateTtExt(ext)&sockstateTtExtTT_EXT_COMM != 0 {
		n += commSize
	}
	return n
}

// Decode converts one raw record into ev. It rejects records of the wrong
// size, kind or family, so corrupt input gives an error, never a panic. It
// does not allocate.
func Decode(b []byte, ev *event.Event) error {
	if len(b) < RecordSize {
		return fmt.Errorf("record of %d bytes, want at least %d", len(b), RecordSize)
	}
	ext := b[offExt]
	if ext&^byte(sockstateTtExtTT_EXT_ADDR6|sockstateTtExtTT_EXT_COMM) != 0 {
		return fmt.Errorf("record with unknown parts %#x", ext)
	}
	if n := recordSize(ext); len(b) != n {
		return fmt.Errorf("record of %d bytes, want %d for parts %#x", len(b), n, ext)
	}
	le := binary.LittleEndian
	var kind event.Kind
	switch sockstateTtKind(b[offKind]) {
	case sockstateTtKindTT_TRANSITION:
		kind = event.Transition
	case sockstateTtKindTT_TIMER_START:
		kind = event.TimerStart
	case sockstateTtKindTT_TIMER_CANCEL:
		kind = event.TimerCancel
	case sockstateTtKindTT_TIMER_EXPIRE:
		kind = event.TimerExpire
	default:
		return fmt.Errorf("record of unknown kind %d", b[offKind])
	}
	family := event.Family(b[offFamily])
	v6 := sockstateTtExt(ext)&sockstateTtExtTT_EXT_ADDR6 != 0
	var src, dst netip.Addr
	switch {
	case family == event.IPv4 && !v6:
		src = netip.AddrFrom4([4]byte(b[offSaddr : offSaddr+4]))
		dst = netip.AddrFrom4([4]byte(b[offDaddr : offDaddr+4]))
	case family == event.IPv6 && v6:
		a := b[RecordSize:]
		src = netip.AddrFrom16([16]byte(a[off6Saddr : off6Saddr+16]))
		dst = netip.AddrFrom16([16]byte(a[off6Daddr : off6Daddr+16]))
	default:
		return fmt.Errorf("record of address family %d with parts %#x", family, ext)
	}
	var flags event.Flags
	if sockstateTtFlags(b[offFlags])&sockstateTtFlagsTT_F_CONNECT_FAILED != 0 {
		flags = event.FlagConnectFailed
	}
	// The caller reuses ev: nothing may carry over. Zeroed and filled in
	// place: a composite literal would be built aside and copied.
	*ev = event.Event{}
	ev.Kind, ev.Family, ev.Flags = kind, family, flags
	ev.OldState, ev.NewState = event.State(b[offOld]), event.State(b[offNew])
	ev.CPU = le.Uint16(b[offCPU:])
	ev.TimeNs = le.Uint64(b[offTs:])
	ev.Sock = le.Uint64(b[offSk:])
	ev.PID = le.Uint32(b[offPid:])
	ev.NetNS = le.Uint32(b[offNetns:])
	ev.Drops = le.Uint32(b[offDrops:])
	ev.Local = netip.AddrPortFrom(src, le.Uint16(b[offSport:]))
	ev.Remote = netip.AddrPortFrom(dst, le.Uint16(b[offDport:]))
	ev.ExpiresTicks = le.Uint32(b[offExpires:])
	if sockstateTtExt(ext)&sockstateTtExtTT_EXT_COMM != 0 {
		copy(ev.Comm[:], b[len(b)-commSize:])
	}
	return nil
}
