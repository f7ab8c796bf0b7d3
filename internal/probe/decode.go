package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/tcptrace/tcptrace/internal/event"
)

// RecordSize is the size of one ring buffer record (struct tt_event).
const RecordSize = int(unsafe.Sizeof(sockstateTtEvent{}))

// Field offsets in struct tt_event, taken from the generated type so that a
// change to bpf/tcptrace.h that is not followed here fails to compile or
// fails TestDecodeLayout, instead of decoding garbage.
var (
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
	offComm    = unsafe.Offsetof(sockstateTtEvent{}.Comm)
)

// Decode converts one raw record into ev. It rejects records of the wrong
// size or kind, so corrupt input gives an error, never a panic. It does
// not allocate.
func Decode(b []byte, ev *event.Event) error {
	if len(b) < RecordSize {
		return fmt.Errorf("record of %d bytes, want %d", len(b), RecordSize)
	}
	b = b[:RecordSize]
	le := binary.LittleEndian
	*ev = event.Event{} // the caller reuses ev: nothing may carry over

	kind := sockstateTtKind(b[offKind])
	switch kind {
	case sockstateTtKindTT_TRANSITION:
		ev.Kind = event.Transition
	case sockstateTtKindTT_TIMER_START:
		ev.Kind = event.TimerStart
	case sockstateTtKindTT_TIMER_CANCEL:
		ev.Kind = event.TimerCancel
	case sockstateTtKindTT_TIMER_EXPIRE:
		ev.Kind = event.TimerExpire
	default:
		return fmt.Errorf("record of unknown kind %d", kind)
	}
	ev.Family = event.Family(b[offFamily])
	var src, dst netip.Addr
	switch ev.Family {
	case event.IPv4:
		src = netip.AddrFrom4([4]byte(b[offSaddr : offSaddr+4]))
		dst = netip.AddrFrom4([4]byte(b[offDaddr : offDaddr+4]))
	case event.IPv6:
		src = netip.AddrFrom16([16]byte(b[offSaddr : offSaddr+16]))
		dst = netip.AddrFrom16([16]byte(b[offDaddr : offDaddr+16]))
	default:
		return fmt.Errorf("record of unknown address family %d", ev.Family)
	}
	ev.Local = netip.AddrPortFrom(src, le.Uint16(b[offSport:]))
	ev.Remote = netip.AddrPortFrom(dst, le.Uint16(b[offDport:]))
	ev.OldState = event.State(b[offOld])
	ev.NewState = event.State(b[offNew])
	if sockstateTtFlags(b[offFlags])&sockstateTtFlagsTT_F_CONNECT_FAILED != 0 {
		ev.Flags |= event.FlagConnectFailed
	}
	ev.CPU = le.Uint16(b[offCPU:])
	ev.TimeNs = le.Uint64(b[offTs:])
	ev.Sock = le.Uint64(b[offSk:])
	ev.PID = le.Uint32(b[offPid:])
	copy(ev.Comm[:], b[offComm:offComm+16])
	ev.NetNS = le.Uint32(b[offNetns:])
	ev.Drops = le.Uint32(b[offDrops:])
	ev.ExpiresTicks = le.Uint32(b[offExpires:])
	return nil
}
