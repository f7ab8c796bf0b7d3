package census

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/tcptrace/tcptrace/internal/event"
)

// tcpInfoBytes builds a struct tcp_info of n bytes with recognizable
// values in the fields tcptrace reads.
func tcpInfoBytes(n int) []byte {
	b := make([]byte, n)
	ne := binary.NativeEndian
	b[0] = byte(event.CloseWait)
	put32 := func(off int, v uint32) {
		if off+4 <= n {
			ne.PutUint32(b[off:], v)
		}
	}
	put64 := func(off int, v uint64) {
		if off+8 <= n {
			ne.PutUint64(b[off:], v)
		}
	}
	put32(tiLastDataSent, 1111)
	put32(tiLastDataRecv, 2222)
	put32(tiLastAckRecv, 3333)
	put32(tiRTT, 44)
	put32(tiTotalRetrans, 5)
	put64(tiBytesAcked, 6666)
	put64(tiBytesReceived, 7777)
	put32(tiSegsOut, 88)
	put32(tiSegsIn, 99)
	put32(tiDataSegsIn, 10)
	put32(tiDataSegsOut, 11)
	put64(tiBytesSent, 1212)
	return b
}

// TestParseTCPInfoLengths: every kernel's struct, from the original 104
// bytes (Linux 2.6) to today's and longer, reads the fields it has and
// says which it lacks.
func TestParseTCPInfoLengths(t *testing.T) {
	for _, c := range []struct {
		n                                      int
		bytes, segs, dataSegs, sent, wantBytes bool
	}{
		{n: 104},                          // 2.6: times, RTT, retransmits
		{n: 120},                          // pacing rates (3.15)
		{n: 136, bytes: true},             // bytes_acked, bytes_received (4.1)
		{n: 144, bytes: true, segs: true}, // segs_out, segs_in (4.2)
		{n: 160, bytes: true, segs: true, dataSegs: true},             // data_segs (4.6)
		{n: 200, bytes: true, segs: true, dataSegs: true},             // delivered (4.18)
		{n: 232, bytes: true, segs: true, dataSegs: true, sent: true}, // snd_wnd (5.4)
		{n: 248, bytes: true, segs: true, dataSegs: true, sent: true}, // total_rto (6.7)
		{n: 400, bytes: true, segs: true, dataSegs: true, sent: true}, // a future kernel
	} {
		ti, err := ParseTCPInfo(tcpInfoBytes(c.n))
		if err != nil {
			t.Fatalf("%d bytes: %v", c.n, err)
		}
		if int(ti.Len) != c.n || !ti.HasTimes() || ti.HasBytes() != c.bytes || ti.HasSegs() != c.segs ||
			ti.HasDataSegs() != c.dataSegs || ti.HasBytesSent() != c.sent {
			t.Errorf("%d bytes: %+v: Has* wrong", c.n, ti)
		}
		if ti.State != uint8(event.CloseWait) || ti.LastDataSentMs != 1111 || ti.LastDataRecvMs != 2222 ||
			ti.LastAckRecvMs != 3333 || ti.RTTus != 44 || ti.TotalRetrans != 5 {
			t.Errorf("%d bytes: %+v: times wrong", c.n, ti)
		}
		if c.bytes && (ti.BytesAcked != 6666 || ti.BytesReceived != 7777) || !c.bytes && (ti.BytesAcked != 0 || ti.BytesReceived != 0) {
			t.Errorf("%d bytes: bytes %d %d", c.n, ti.BytesAcked, ti.BytesReceived)
		}
		if c.sent && ti.BytesSent != 1212 || !c.sent && ti.BytesSent != 0 {
			t.Errorf("%d bytes: bytes sent %d", c.n, ti.BytesSent)
		}
	}
	for _, n := range []int{0, 1, 56, 103} {
		if _, err := ParseTCPInfo(make([]byte, n)); err == nil {
			t.Errorf("%d bytes accepted as a tcp_info", n)
		}
	}
}

// infoMsg is an inet_diag_msg followed by attributes: a 64-bit-aligned
// INET_DIAG_INFO (after an INET_DIAG_PAD, as nla_reserve_64bit puts it),
// and INET_DIAG_SHUTDOWN.
func infoMsg(info []byte) []byte {
	b := make([]byte, MsgLen)
	b[0], b[1] = afInet, byte(event.CloseWait)
	attr := func(typ uint16, payload []byte) {
		n := 4 + len(payload)
		h := make([]byte, 4)
		binary.NativeEndian.PutUint16(h, uint16(n))
		binary.NativeEndian.PutUint16(h[2:], typ)
		b = append(b, h...)
		b = append(b, payload...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	attr(14, nil) // INET_DIAG_PAD
	attr(attrInfo, info)
	attr(8, []byte{1}) // INET_DIAG_SHUTDOWN: RCV_SHUTDOWN
	return b
}

func TestParseInetDiagMsgInfo(t *testing.T) {
	s, err := ParseInetDiagMsg(infoMsg(tcpInfoBytes(232)))
	if err != nil {
		t.Fatal(err)
	}
	if s.Info.Len != 232 || s.Info.LastAckRecvMs != 3333 || s.State != event.CloseWait {
		t.Errorf("got %+v", s)
	}
	// Without the attribute, no tcp_info.
	if s, err := ParseInetDiagMsg(infoMsg(nil)[:MsgLen]); err != nil || s.Info.Len != 0 || s.Info.HasTimes() {
		t.Errorf("bare message: %+v, %v", s.Info, err)
	}
	// Malformed attributes are an error, not a guess.
	for name, b := range map[string][]byte{
		"short info":    infoMsg(make([]byte, 50)),
		"length 2":      append(make([]byte, MsgLen), 2, 0, 2, 0),
		"length past":   append(make([]byte, MsgLen), 200, 0, 2, 0, 0, 0, 0, 0),
		"stray 3 bytes": append(make([]byte, MsgLen), 1, 2, 3),
	} {
		b[0] = afInet
		if _, err := ParseInetDiagMsg(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseInetDiagMsg(make([]byte, 10)); !errors.Is(err, ErrShort) {
		t.Errorf("short message: %v", err)
	}
}

func FuzzParseTCPInfo(f *testing.F) {
	for _, n := range []int{104, 136, 232, 248} {
		f.Add(tcpInfoBytes(n))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ti, err := ParseTCPInfo(b)
		if err != nil {
			if ti != (TCPInfo{}) {
				t.Fatalf("non-zero TCPInfo with error: %+v", ti)
			}
			return
		}
		if len(b) < tiLenTimes || int(ti.Len) != min(len(b), 0xffff) {
			t.Fatalf("%d bytes parsed as %+v", len(b), ti)
		}
		if !ti.HasBytesSent() && ti.BytesSent != 0 {
			t.Fatalf("bytes sent %d from %d bytes", ti.BytesSent, len(b))
		}
	})
}
