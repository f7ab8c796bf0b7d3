package census

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/tcptrace/tcptrace/internal/event"
)

func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

// goldenMsgs reads testdata/inet_diag_msg.txt: hex lines, # comments.
func goldenMsgs(tb testing.TB) [][]byte {
	tb.Helper()
	f, err := os.Open("testdata/inet_diag_msg.txt")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var msgs [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		b, err := hex.DecodeString(line)
		if err != nil {
			tb.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return msgs
}

func TestParseInetDiagMsgGolden(t *testing.T) {
	if !littleEndian() {
		t.Skip("golden bytes were captured on a little-endian host")
	}
	want := []Socket{
		{
			Family: event.IPv4, State: event.CloseWait,
			Local:  netip.MustParseAddrPort("127.0.0.1:36025"),
			Remote: netip.MustParseAddrPort("127.0.0.1:44826"),
			Inode:  220603, Cookie: 64, RQueue: 1, // the FIN counts as one unread sequence number
		},
		{
			Family: event.IPv4, State: event.FinWait2, Timer: TimerTimeWait, ExpiresMs: 59396,
			Local:  netip.MustParseAddrPort("127.0.0.1:44826"),
			Remote: netip.MustParseAddrPort("127.0.0.1:36025"),
			Cookie: 65,
		},
		{
			Family: event.IPv6, State: event.TimeWait, Timer: TimerTimeWait, ExpiresMs: 59692,
			Local:  netip.MustParseAddrPort("[::1]:36959"),
			Remote: netip.MustParseAddrPort("[::1]:35664"),
			Cookie: 66,
		},
	}
	msgs := goldenMsgs(t)
	if len(msgs) != len(want) {
		t.Fatalf("%d golden messages, want %d", len(msgs), len(want))
	}
	for i, b := range msgs {
		got, err := ParseInetDiagMsg(b)
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		if got != want[i] {
			t.Errorf("message %d:\n got %+v\nwant %+v", i+1, got, want[i])
		}
		// The attributes are ignored: the bare header parses the same.
		if bare, err := ParseInetDiagMsg(b[:MsgLen]); err != nil || bare != got {
			t.Errorf("message %d without attributes: %+v, %v", i+1, bare, err)
		}
	}
}

// TestParseInetDiagMsgFields builds a message field by field, so that every
// offset is checked with distinct values in host byte order.
func TestParseInetDiagMsgFields(t *testing.T) {
	ne := binary.NativeEndian
	b := make([]byte, MsgLen)
	b[0], b[1], b[2], b[3] = afInet6, byte(event.CloseWait), byte(TimerKeepalive), 7
	binary.BigEndian.PutUint16(b[4:], 8080)
	binary.BigEndian.PutUint16(b[6:], 51234)
	src := netip.MustParseAddr("2001:db8::1").As16()
	dst := netip.MustParseAddr("::ffff:192.0.2.7").As16()
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	ne.PutUint32(b[40:], 3)          // if
	ne.PutUint32(b[44:], 0x89abcdef) // cookie[0]: low half
	ne.PutUint32(b[48:], 0x01234567) // cookie[1]: high half
	ne.PutUint32(b[52:], 1500)       // expires
	ne.PutUint32(b[56:], 11)         // rqueue
	ne.PutUint32(b[60:], 22)         // wqueue
	ne.PutUint32(b[64:], 1000)       // uid
	ne.PutUint32(b[68:], 0xfffffffe) // inode
	got, err := ParseInetDiagMsg(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Socket{
		Family: event.IPv6, State: event.CloseWait, Timer: TimerKeepalive, Retrans: 7,
		Local:   netip.MustParseAddrPort("[2001:db8::1]:8080"),
		Remote:  netip.MustParseAddrPort("[::ffff:192.0.2.7]:51234"),
		IfIndex: 3, Cookie: 0x0123456789abcdef, ExpiresMs: 1500, RQueue: 11, WQueue: 22,
		UID: 1000, Inode: 0xfffffffe,
	}
	if got != want {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	// IPv4 uses the first 4 bytes of each address field.
	b[0] = afInet
	copy(b[8:], []byte{10, 1, 2, 3})
	copy(b[24:], []byte{192, 0, 2, 9})
	got, err = ParseInetDiagMsg(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Local != netip.MustParseAddrPort("10.1.2.3:8080") || got.Remote != netip.MustParseAddrPort("192.0.2.9:51234") || got.Family != event.IPv4 {
		t.Fatalf("IPv4: got %+v", got)
	}
}

func TestParseInetDiagMsgErrors(t *testing.T) {
	for _, n := range []int{0, 1, MsgLen - 1} {
		if _, err := ParseInetDiagMsg(make([]byte, n)); !errors.Is(err, ErrShort) {
			t.Errorf("%d bytes: err = %v, want ErrShort", n, err)
		}
	}
	b := make([]byte, MsgLen)
	for _, fam := range []byte{0, 1, 3, 17, 255} {
		b[0] = fam
		if _, err := ParseInetDiagMsg(b); err == nil {
			t.Errorf("family %d accepted", fam)
		}
	}
}

func FuzzParseInetDiagMsg(f *testing.F) {
	for _, m := range goldenMsgs(f) {
		f.Add(m)
	}
	f.Add([]byte{})
	f.Add(make([]byte, MsgLen-1))
	f.Add(append([]byte{afInet6}, make([]byte, MsgLen)...))
	f.Add(infoMsg(tcpInfoBytes(232)))
	f.Add(infoMsg(tcpInfoBytes(104)))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseInetDiagMsg(b)
		if err != nil {
			if s != (Socket{}) {
				t.Fatalf("non-zero Socket with error: %+v", s)
			}
			return
		}
		if len(b) < MsgLen || (s.Family != event.IPv4 && s.Family != event.IPv6) {
			t.Fatalf("accepted %d bytes as %+v", len(b), s)
		}
		if s.Local.Addr().Is4() != (s.Family == event.IPv4) {
			t.Fatalf("address kind does not match family: %+v", s)
		}
	})
}

func TestMask(t *testing.T) {
	m := Mask(event.CloseWait, event.TimeWait)
	if uint32(m) != 1<<8|1<<6 {
		t.Fatalf("Mask = %#x", uint32(m))
	}
	if !m.Has(event.CloseWait) || m.Has(event.Established) || m.Has(200) {
		t.Fatal("Has wrong")
	}
	if got := m.String(); got != "TIME_WAIT|CLOSE_WAIT" {
		t.Errorf("String = %q", got)
	}
	if Mask().String() != "none" || Mask(200) != 0 {
		t.Error("empty or out-of-range mask wrong")
	}
	for s := event.Established; s < event.NumStates; s++ {
		if !AllStates.Has(s) {
			t.Errorf("AllStates lacks %v", s)
		}
	}
	if AllStates.Has(0) {
		t.Error("AllStates has state 0")
	}
}

func TestBuildRequest(t *testing.T) {
	b := BuildRequest(afInet6, Mask(event.CloseWait), false)
	if len(b) != reqLen || b[0] != afInet6 || b[1] != 6 || b[2] != 0 || b[3] != 0 {
		t.Fatalf("header %v", b[:4])
	}
	if info := BuildRequest(afInet, Mask(event.CloseWait), true); info[2] != 1<<(2-1) {
		t.Fatalf("idiag_ext %#x, want INET_DIAG_INFO's bit 0x2", info[2])
	}
	if binary.NativeEndian.Uint32(b[4:]) != 1<<8 {
		t.Fatalf("states %v", b[4:8])
	}
	for i, c := range b[8:] {
		if c != 0 {
			t.Fatalf("sockid byte %d = %d, want 0 (no address filter)", i, c)
		}
	}
}
