package probe

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/tcptrace/tcptrace/internal/event"
)

// A record as the kernel writes it, field by field (little endian), for
// a transition of an IPv4 socket 127.0.0.1:40000 -> 127.0.0.1:8080.
var goldenRecord = strings.Join([]string{
	"00ca9a3b00000000",                 // ts_ns = 1e9
	"0080a10281888fff",                 // skaddr = 0xffff8f888102a18000
	"39300000",                         // pid = 12345
	"3a300000",                         // tid = 12346
	"000000f0",                         // netns = 4026531840
	"02000000",                         // drops = 2
	"00000000",                         // expires
	"7f000001000000000000000000000000", // saddr
	"7f000001000000000000000000000000", // daddr
	"409c",                             // sport = 40000
	"901f",                             // dport = 8080
	"0100",                             // cpu = 1
	"01",                               // kind = transition
	"02",                               // family = AF_INET
	"01",                               // oldstate = ESTABLISHED
	"04",                               // newstate = FIN_WAIT1
	"00",                               // flags
	"00",                               // pad
	"6375726c000000000000000000000000", // comm = "curl"
}, "")

func TestRecordSize(t *testing.T) {
	if RecordSize != 96 {
		t.Fatalf("struct tt_event is %d bytes, want 96 (bpf/tcptrace.h)", RecordSize)
	}
	if len(goldenRecord)/2 != RecordSize {
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

	// IPv6 and a timer record.
	b[offFamily] = 10
	b[offKind] = 2
	copy(b[offSaddr:], netip.MustParseAddr("::1").AsSlice())
	b[offExpires] = 0x98
	b[offExpires+1] = 0x3a // 15000 jiffies
	if err := Decode(b, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Kind != event.TimerStart || ev.Local.Addr() != netip.MustParseAddr("::1") || ev.ExpiresTicks != 15000 {
		t.Errorf("decoded %+v", ev)
	}
}

func TestDecodeRejects(t *testing.T) {
	b, _ := hex.DecodeString(goldenRecord)
	var ev event.Event
	for name, mutate := range map[string]func([]byte) []byte{
		"short":      func(b []byte) []byte { return b[:40] },
		"empty":      func(b []byte) []byte { return nil },
		"bad kind":   func(b []byte) []byte { b[offKind] = 9; return b },
		"bad family": func(b []byte) []byte { b[offFamily] = 1; return b },
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
