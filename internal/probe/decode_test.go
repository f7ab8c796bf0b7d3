package probe

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/tcptrace/tcptrace/internal/event"
)

// A record as the kernel writes it, field by field (little endian), for
// a transition of an IPv4 socket 127.0.0.1:40000 -> 127.0.0.1:8080 in its
// owner's close(), so with the comm part.
var goldenRecord = strings.Join([]string{
	"00ca9a3b00000000",                 // ts_ns = 1e9
	"0080a10281888fff",                 // skaddr = 0xffff8f888102a18000
	"39300000",                         // pid = 12345
	"000000f0",                         // netns = 4026531840
	"02000000",                         // drops = 2
	"00000000",                         // expires
	"7f000001",                         // saddr
	"7f000001",                         // daddr
	"409c",                             // sport = 40000
	"901f",                             // dport = 8080
	"0100",                             // cpu = 1
	"01",                               // kind = transition
	"02",                               // family = AF_INET
	"01",                               // oldstate = ESTABLISHED
	"04",                               // newstate = FIN_WAIT1
	"00",                               // flags
	"02",                               // ext = TT_EXT_COMM
	"00000000",                         // pad
	"6375726c000000000000000000000000", // comm = "curl"
}, "")

func TestRecordSize(t *testing.T) {
	// 56 bytes plus the ring buffer's 8-byte header: one cache line.
	if RecordSize != 56 || addr6Size != 32 || commSize != 16 {
		t.Fatalf("struct tt_event is %d bytes, tt_addr6 %d, tt_comm %d; want 56, 32, 16 (bpf/tcptrace.h)", RecordSize, addr6Size, commSize)
	}
	if len(goldenRecord)/2 != RecordSize+commSize {
		t.Fatalf("golden record is %d bytes", len(goldenRecord)/2)
	}
}

func TestDecodeGolden(t *testing.T) {
	b, err := hex.DecodeString(goldenRecord)
	if err != nil {
		t.Fatal(err)
	}
	var ev event.Event
	if err := Decode(b, &ev); err != nil {
		t.Fatal(err)
	}
	want := event.Event{
		Kind: event.Transition, Family: event.IPv4, OldState: event.Established, NewState: event.FinWait1,
		CPU: 1, TimeNs: 1e9, Sock: 0xff8f888102a18000, PID: 12345, NetNS: 4026531840, Drops: 2,
		Local:  netip.MustParseAddrPort("127.0.0.1:40000"),
		Remote: netip.MustParseAddrPort("127.0.0.1:8080"),
	}
	copy(want.Comm[:], "curl")
	if ev != want {
		t.Errorf("decoded\n%+v\nwant\n%+v", ev, want)
	}

	// The common record: no comm, one cache line with its header.
	short := append([]byte(nil), b[:RecordSize]...)
	short[offExt] = 0
	if err := Decode(short, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Comm != [16]byte{} || ev.Local != want.Local {
		t.Errorf("decoded %+v", ev)
	}

	// An IPv6 timer record: the addresses follow the fixed part.
	v6 := make([]byte, RecordSize+addr6Size)
	copy(v6, b[:RecordSize])
	v6[offFamily] = 10
	v6[offKind] = 2
	v6[offExt] = 1
	clear(v6[offSaddr : offDaddr+4]) // the kernel leaves the IPv4 fields 0
	copy(v6[RecordSize:], netip.MustParseAddr("::1").AsSlice())
	copy(v6[RecordSize+16:], netip.MustParseAddr("fe80::2").AsSlice())
	v6[offExpires] = 0x98
	v6[offExpires+1] = 0x3a // 15000 jiffies
	if err := Decode(v6, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Kind != event.TimerStart || ev.Local != netip.MustParseAddrPort("[::1]:40000") ||
		ev.Remote != netip.MustParseAddrPort("[fe80::2]:8080") || ev.ExpiresTicks != 15000 {
		t.Errorf("decoded %+v", ev)
	}

	// encode, the tests' record writer, agrees with Decode both ways.
	for _, rec := range [][]byte{b, short, v6} {
		if err := Decode(rec, &ev); err != nil {
			t.Fatal(err)
		}
		if got := encode(&ev); hex.EncodeToString(got) != hex.EncodeToString(rec) {
			t.Errorf("encode(Decode(%x))\n= %x", rec, got)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	b, _ := hex.DecodeString(goldenRecord)
	var ev event.Event
	for name, mutate := range map[string]func([]byte) []byte{
		"short":          func(b []byte) []byte { return b[:40] },
		"empty":          func(b []byte) []byte { return nil },
		"comm missing":   func(b []byte) []byte { return b[:RecordSize] },
		"trailing bytes": func(b []byte) []byte { return append(b, 0, 0, 0, 0, 0, 0, 0, 0) },
		"unknown part":   func(b []byte) []byte { b[offExt] |= 4; return b },
		"bad kind":       func(b []byte) []byte { b[offKind] = 9; return b },
		"bad family":     func(b []byte) []byte { b[offFamily] = 1; return b },
		"v6 without addresses": func(b []byte) []byte {
			b[offFamily] = 10
			return b
		},
		"v4 with v6 addresses": func(b []byte) []byte {
			b[offExt] = 1 | 2
			return append(b, make([]byte, addr6Size)...)
		},
	} {
		c := append([]byte(nil), b...)
		if err := Decode(mutate(c), &ev); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := hex.DecodeString(goldenRecord)
	f.Add(b)
	f.Add(b[:10])
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev event.Event
		if err := Decode(data, &ev); err == nil {
			if ev.Family != event.IPv4 && ev.Family != event.IPv6 {
				t.Fatalf("accepted family %d", ev.Family)
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	rec, _ := hex.DecodeString(goldenRecord)
	var ev event.Event
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(rec, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFindSymbol(t *testing.T) {
	const kallsyms = `ffffffff81000000 T _stext
ffffffff820089f0 t tw_timer_handler
ffffffff820089f0 d tw_data
`
	addr, err := findSymbol(strings.NewReader(kallsyms), "tw_timer_handler")
	if err != nil || addr != 0xffffffff820089f0 {
		t.Errorf("got %x, %v", addr, err)
	}
	if _, err := findSymbol(strings.NewReader("0000000000000000 t tw_timer_handler\n"), "tw_timer_handler"); err == nil ||
		!strings.Contains(err.Error(), "hidden") {
		t.Errorf("zeroed address: %v", err)
	}
	if _, err := findSymbol(strings.NewReader(kallsyms), "nope"); err == nil {
		t.Error("missing symbol found")
	}
	hz, err := parseHZ(strings.NewReader("CONFIG_X=y\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n"))
	if err != nil || hz != 250 {
		t.Errorf("parseHZ = %d, %v", hz, err)
	}
}
