package census

import (
	"encoding/binary"
	"fmt"
)

// TCPInfo is the part of a socket's struct tcp_info (include/uapi/linux/
// tcp.h) that tcptrace reads: the times since the last segments, which
// date a socket tcptrace never saw change state, and the byte counters.
//
// The kernel sends its own sizeof(struct tcp_info), which has grown over
// the years; fields past Len were not sent by this kernel and are zero,
// which does not mean 0. The Has methods say which groups are known.
type TCPInfo struct {
	// Len is how many bytes of struct tcp_info the kernel sent: 0 when it
	// sent none (mini-sockets and request sockets have no tcp_info, and
	// it is only sent when asked for).
	Len uint16
	// State is tcpi_state, the same as the socket's state.
	State uint8
	// LastDataSentMs, LastDataRecvMs and LastAckRecvMs are milliseconds
	// since this socket last sent data, last received data, and last
	// received a segment that acknowledged something (now - lsndtime,
	// now - lrcvtime, now - rcv_tstamp, in jiffies converted to ms).
	//
	// For a CLOSE_WAIT socket the peer's FIN updated rcv_tstamp and,
	// being no data, not lrcvtime: LastAckRecvMs is then the time since
	// the FIN, unless the peer sent something later (a keepalive answer),
	// so it is a lower bound on the time spent in CLOSE_WAIT.
	LastDataSentMs, LastDataRecvMs, LastAckRecvMs uint32
	// RTTus is the smoothed round-trip time in microseconds.
	RTTus uint32
	// TotalRetrans counts segments retransmitted over the connection's life.
	TotalRetrans uint32
	// BytesAcked is how many bytes the peer acknowledged, BytesReceived
	// how many this socket received (Linux 4.1+, Len >= 136).
	BytesAcked, BytesReceived uint64
	// SegsOut and SegsIn count segments sent and received (4.2+).
	SegsOut, SegsIn uint32
	// DataSegsIn and DataSegsOut count segments carrying data (4.6+).
	DataSegsIn, DataSegsOut uint32
	// BytesSent counts bytes sent, retransmissions included (4.19+).
	BytesSent uint64
}

// Offsets into struct tcp_info, and the lengths from which a group of
// fields is present. The struct only ever grows at its end.
const (
	tiLastDataSent  = 44
	tiLastDataRecv  = 52
	tiLastAckRecv   = 56
	tiRTT           = 68
	tiTotalRetrans  = 100
	tiBytesAcked    = 120
	tiBytesReceived = 128
	tiSegsOut       = 136
	tiSegsIn        = 140
	tiDataSegsIn    = 152
	tiDataSegsOut   = 156
	tiBytesSent     = 200

	// tiLenTimes is the original struct's size (Linux 2.6), which holds
	// the times; anything shorter is not a tcp_info.
	tiLenTimes = tiTotalRetrans + 4
	tiLenBytes = tiBytesReceived + 8
	tiLenSegs  = tiSegsIn + 4
	tiLenData  = tiDataSegsOut + 4
	tiLenSent  = tiBytesSent + 8
)

// HasTimes says the times and RTT are known (any tcp_info at all).
func (ti *TCPInfo) HasTimes() bool { return ti.Len >= tiLenTimes }

// HasBytes says BytesAcked and BytesReceived are known.
func (ti *TCPInfo) HasBytes() bool { return ti.Len >= tiLenBytes }

// HasSegs says SegsOut and SegsIn are known.
func (ti *TCPInfo) HasSegs() bool { return ti.Len >= tiLenSegs }

// HasDataSegs says DataSegsIn and DataSegsOut are known.
func (ti *TCPInfo) HasDataSegs() bool { return ti.Len >= tiLenData }

// HasBytesSent says BytesSent is known.
func (ti *TCPInfo) HasBytesSent() bool { return ti.Len >= tiLenSent }

// ParseTCPInfo decodes a struct tcp_info of any kernel's length (the
// payload of an INET_DIAG_INFO attribute, or what getsockopt(TCP_INFO)
// returns), in host byte order. Fields past len(b) stay zero and their Has
// method says so; bytes past the fields tcptrace reads are ignored. It
// fails only on a buffer too short to be any kernel's tcp_info.
func ParseTCPInfo(b []byte) (TCPInfo, error) {
	if len(b) < tiLenTimes {
		return TCPInfo{}, fmt.Errorf("parse tcp_info: %d bytes, want at least %d", len(b), tiLenTimes)
	}
	ne := binary.NativeEndian
	u32 := func(off int) uint32 {
		if off+4 > len(b) {
			return 0
		}
		return ne.Uint32(b[off:])
	}
	u64 := func(off int) uint64 {
		if off+8 > len(b) {
			return 0
		}
		return ne.Uint64(b[off:])
	}
	return TCPInfo{
		Len:            uint16(min(len(b), 0xffff)),
		State:          b[0],
		LastDataSentMs: u32(tiLastDataSent),
		LastDataRecvMs: u32(tiLastDataRecv),
		LastAckRecvMs:  u32(tiLastAckRecv),
		RTTus:          u32(tiRTT),
		TotalRetrans:   u32(tiTotalRetrans),
		BytesAcked:     u64(tiBytesAcked),
		BytesReceived:  u64(tiBytesReceived),
		SegsOut:        u32(tiSegsOut),
		SegsIn:         u32(tiSegsIn),
		DataSegsIn:     u32(tiDataSegsIn),
		DataSegsOut:    u32(tiDataSegsOut),
		BytesSent:      u64(tiBytesSent),
	}, nil
}
