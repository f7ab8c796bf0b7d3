// Package census lists the TCP sockets that exist right now, through
// netlink sock_diag (NETLINK_SOCK_DIAG, inet_diag_req_v2), as ss(8) does.
// tcptrace uses it for sockets that predate the tracer and for the periodic
// CLOSE_WAIT census.
//
// The kernel filters by state (the idiag_states bitmask), so only the
// sockets asked for are copied to user space. The kernel still walks its
// whole established hash table once per family: that table is shared by all
// network namespaces and sized at boot (262144 buckets on the project's
// machines), so a census costs in proportion to the buckets plus every TCP
// socket on the host, in any namespace, whatever the mask.
//
// What the kernel reports for mini-sockets (struct inet_timewait_sock, what
// is left of a TCP connection after close): idiag_state is the
// mini-socket's substate, TIME_WAIT for a real TIME_WAIT socket and
// FIN_WAIT2 for an orphan in FIN_WAIT2 (the application closed before the
// peer sent its FIN), and the state filter tests that substate too. So a
// TIME_WAIT request does not return FIN_WAIT2 orphans, and a FIN_WAIT2
// request returns both full FIN_WAIT2 sockets (still held by a file
// descriptor, e.g. after shutdown(SHUT_WR): Inode != 0) and orphan
// mini-sockets (Inode 0, UID 0, Timer TimerTimeWait, ExpiresMs up to
// tcp_fin_timeout). Mini-sockets always report UID 0 and inode 0, whoever
// owned the connection. The census tests check this against the running
// kernel.
package census

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/tcptrace/tcptrace/internal/event"
)

// Timer says which timer ExpiresMs refers to (idiag_timer).
type Timer uint8

// Timer kinds, as the kernel numbers them in idiag_timer.
const (
	TimerNone       Timer = 0 // no timer pending; ExpiresMs is 0
	TimerRetransmit Timer = 1 // retransmit (or loss probe, RACK reorder)
	TimerKeepalive  Timer = 2 // keepalive, SYN-ACK, or a full socket's FIN_WAIT2 timer
	TimerTimeWait   Timer = 3 // a mini-socket's life timer (TIME_WAIT or FIN_WAIT2 orphan)
	TimerProbe      Timer = 4 // zero-window probe
)

// Socket is one TCP socket as sock_diag reports it.
type Socket struct {
	// Family is IPv4 or IPv6. A dual-stack (AF_INET6) socket talking to an
	// IPv4 peer is IPv6 with IPv4-mapped addresses (::ffff:a.b.c.d), as the
	// kernel reports it.
	Family event.Family
	// State is the TCP state. For a mini-socket it is the substate:
	// TimeWait, or FinWait2 for an orphan in FIN_WAIT2.
	State event.State
	// Local and Remote endpoints. IPv6 link-local addresses carry no zone.
	Local, Remote netip.AddrPort
	// Inode of the socket's file: 0 for mini-sockets and for sockets no
	// file refers to (not yet accepted, or orphaned by close()).
	Inode uint64
	// UID that owns the socket (0 for mini-sockets).
	UID uint32
	// Cookie is the kernel's socket cookie (as bpf_get_socket_cookie sees it).
	Cookie uint64
	// ExpiresMs is idiag_expires: milliseconds until the timer named by
	// Timer fires, 0 when none is pending. For a mini-socket it is the
	// remaining life (at most 60000 for TIME_WAIT).
	ExpiresMs uint32
	// Timer is idiag_timer: which timer ExpiresMs refers to.
	Timer Timer
	// Retrans is idiag_retrans: retransmits (full sockets) or 0.
	Retrans uint8
	// RQueue and WQueue: for LISTEN the accept-queue length and backlog;
	// otherwise bytes received not yet read and bytes sent not yet acked.
	RQueue, WQueue uint32
	// IfIndex is the bound interface (idiag_if), 0 when none.
	IfIndex uint32
	// Info is the socket's tcp_info when the dump asked for it
	// (Query.Info) and the kernel has one: full sockets only, so never
	// for mini-sockets or SYN_RECV request sockets. Info.Len is 0 when
	// absent.
	Info TCPInfo
}

// MsgLen is the size of struct inet_diag_msg, the fixed part of each
// sock_diag reply; netlink attributes may follow it.
const MsgLen = 72

const (
	afInet  = 2
	afInet6 = 10
)

// ErrShort is returned (wrapped) by ParseInetDiagMsg for a message shorter
// than MsgLen.
var ErrShort = errors.New("inet_diag_msg too short")

// ParseInetDiagMsg decodes the inet_diag_msg at the start of b (the payload
// of one SOCK_DIAG_BY_FAMILY netlink message, without the netlink header)
// and the attributes after it: INET_DIAG_INFO (struct tcp_info) fills
// Info, others are skipped. Integers other than ports and addresses are in
// host byte order, as the kernel writes them. It fails on a short message,
// a family other than AF_INET or AF_INET6, and a malformed attribute, and
// never panics.
//
// Layout (include/uapi/linux/inet_diag.h):
//
//	0  u8 family, u8 state, u8 timer, u8 retrans
//	4  be16 sport, be16 dport, be32 src[4], be32 dst[4], u32 if, u32 cookie[2]
//	52 u32 expires, u32 rqueue, u32 wqueue, u32 uid, u32 inode
func ParseInetDiagMsg(b []byte) (Socket, error) {
	if len(b) < MsgLen {
		return Socket{}, fmt.Errorf("parse sock_diag reply: %d bytes: %w", len(b), ErrShort)
	}
	ne := binary.NativeEndian
	be := binary.BigEndian
	s := Socket{
		Family:    event.Family(b[0]),
		State:     event.State(b[1]),
		Timer:     Timer(b[2]),
		Retrans:   b[3],
		IfIndex:   ne.Uint32(b[40:]),
		Cookie:    uint64(ne.Uint32(b[44:])) | uint64(ne.Uint32(b[48:]))<<32,
		ExpiresMs: ne.Uint32(b[52:]),
		RQueue:    ne.Uint32(b[56:]),
		WQueue:    ne.Uint32(b[60:]),
		UID:       ne.Uint32(b[64:]),
		Inode:     uint64(ne.Uint32(b[68:])),
	}
	sport, dport := be.Uint16(b[4:]), be.Uint16(b[6:])
	var src, dst netip.Addr
	switch b[0] {
	case afInet:
		src = netip.AddrFrom4([4]byte(b[8:12]))
		dst = netip.AddrFrom4([4]byte(b[24:28]))
	case afInet6:
		src = netip.AddrFrom16([16]byte(b[8:24]))
		dst = netip.AddrFrom16([16]byte(b[24:40]))
	default:
		return Socket{}, fmt.Errorf("parse sock_diag reply: family %d is not AF_INET or AF_INET6", b[0])
	}
	s.Local = netip.AddrPortFrom(src, sport)
	s.Remote = netip.AddrPortFrom(dst, dport)
	if err := parseAttrs(b[MsgLen:], &s); err != nil {
		return Socket{}, err
	}
	return s, nil
}

// Attribute types of a sock_diag reply (enum in include/uapi/linux/
// inet_diag.h) that tcptrace reads.
const attrInfo = 2 // INET_DIAG_INFO: struct tcp_info

// parseAttrs walks the netlink attributes (struct rtattr: u16 length
// including the 4-byte header, u16 type; each padded to 4 bytes).
func parseAttrs(b []byte, s *Socket) error {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("parse sock_diag reply: %d stray bytes after the attributes", len(b))
		}
		n, typ := int(ne.Uint16(b)), ne.Uint16(b[2:])
		if n < 4 || n > len(b) {
			return fmt.Errorf("parse sock_diag reply: attribute %d of length %d in %d bytes", typ, n, len(b))
		}
		if typ == attrInfo {
			ti, err := ParseTCPInfo(b[4:n])
			if err != nil {
				return fmt.Errorf("parse sock_diag reply: %w", err)
			}
			s.Info = ti
		}
		b = b[min(len(b), (n+3)&^3):]
	}
	return nil
}

// StateMask is a set of TCP states: bit 1<<State for each, as the kernel's
// idiag_states field takes it.
type StateMask uint32

// AllStates selects every TCP state.
const AllStates StateMask = 1<<event.NumStates - 2

// Mask returns the set of the given states.
func Mask(states ...event.State) StateMask {
	var m StateMask
	for _, s := range states {
		if s < 32 {
			m |= 1 << s
		}
	}
	return m
}

// Has reports whether s is in m.
func (m StateMask) Has(s event.State) bool {
	return s < 32 && m&(1<<s) != 0
}

// String lists the states in m, "CLOSE_WAIT|TIME_WAIT".
func (m StateMask) String() string {
	out := ""
	for s := event.State(0); s < 32; s++ {
		if !m.Has(s) {
			continue
		}
		if out != "" {
			out += "|"
		}
		out += s.String()
	}
	if out == "" {
		return "none"
	}
	return out
}
