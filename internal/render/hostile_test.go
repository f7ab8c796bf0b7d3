package render

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tcptrace/tcptrace/internal/advisor"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/report"
)

// hostileNames are process names any unprivileged process can give
// itself (at most 15 bytes, as comm is), and how text output shows them.
var hostileNames = []struct{ comm, text string }{
	{"x\x1b[2J\x1b[31mEVIL", `x\x1b[2J\x1b[31mEVIL`},
	{"\x1b]52;c;ZXZp\x07", `\x1b]52;c;ZXZp\x07`},
	{"\x1b]0;title\x1b\\", `\x1b]0;title\x1b\`},
	{"a\nFAKE LINE", `a\x0aFAKE LINE`},
	{"bad\xff\xfe", `bad\xff\xfe`},
	{"\u009b2Jc1", `\u009b2Jc1`},
	{"\xc3\xbf", "ÿ"},
	{"中文进程", "中文进程"},
}

// hostileCmdline is a command line with an OSC 52 clipboard write, a
// screen clear, a forged line and an invalid byte.
const hostileCmdline = "srv --x \x1b]52;c;cm0gLXJmIC8K\x07 \x1b[2J\nroot# \xff ÿ 中文"

// checkNoControls fails if out holds a control character other than
// newline, or invalid UTF-8: nothing a terminal would act on.
func checkNoControls(t *testing.T, what string, out []byte) {
	t.Helper()
	if !utf8.Valid(out) {
		t.Errorf("%s is not valid UTF-8:\n%q", what, out)
	}
	for _, r := range string(out) {
		if (r < 0x20 && r != '\n') || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			t.Errorf("%s holds a raw %U:\n%q", what, r, out)
			return
		}
	}
}

func hostileEvent(comm string) *event.Event {
	ev := &event.Event{Kind: event.Transition, Family: event.IPv4, OldState: event.Close, NewState: event.SynSent,
		TimeNs: 1e9, Sock: 0xffff1, PID: 4242, NetNS: 1,
		Local: netip.MustParseAddrPort("127.0.0.1:0"), Remote: netip.MustParseAddrPort("127.0.0.1:80")}
	copy(ev.Comm[:], comm)
	return ev
}

func TestEventsEscapeComm(t *testing.T) {
	for _, h := range hostileNames {
		var text, js bytes.Buffer
		if err := NewEventWriter(&text, false, Clock{}).Write(hostileEvent(h.comm)); err != nil {
			t.Fatal(err)
		}
		checkNoControls(t, "event text for "+strings.ToValidUTF8(h.comm, "?"), text.Bytes())
		if !strings.Contains(text.String(), " 4242    "+h.text+" ") {
			t.Errorf("comm %q: text\n%s\nwant it shown as %s", h.comm, text.String(), h.text)
		}

		if err := NewEventWriter(&js, true, Clock{}).Write(hostileEvent(h.comm)); err != nil {
			t.Fatal(err)
		}
		var ev struct{ Comm string }
		if err := json.Unmarshal(js.Bytes(), &ev); err != nil {
			t.Fatalf("comm %q: not JSON: %v\n%s", h.comm, err, js.Bytes())
		}
		if want := decodedJSON(h.comm); ev.Comm != want {
			t.Errorf("comm %q: JSON has %q, want %q", h.comm, ev.Comm, want)
		}
		// Byte for byte what encoding/json writes in the report.
		want, _ := json.Marshal(h.comm)
		if !bytes.Contains(js.Bytes(), append([]byte(`"comm":`), want...)) {
			t.Errorf("comm %q: events JSON %s, the report's encoding/json writes %s", h.comm, js.Bytes(), want)
		}
	}
	// Valid UTF-8 is written as it is, not byte by byte as \u00XX.
	var js bytes.Buffer
	_ = NewEventWriter(&js, true, Clock{}).Write(hostileEvent("\xc3\xbf中"))
	if !bytes.Contains(js.Bytes(), []byte(`"comm":"ÿ中"`)) {
		t.Errorf("events JSON %s: want \"comm\":\"ÿ中\"", js.Bytes())
	}
}

// decodedJSON is what a JSON reader gets for s from tcptrace: s itself
// where it is valid UTF-8, each invalid byte as U+FFFD.
func decodedJSON(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// hostileReport has hostile names and command lines in every place the
// text report prints one: the command, the summary, the CLOSE_WAIT
// tables, the port exhaustion owners and the advisor's reasons.
func hostileReport(comm string) *report.Report {
	r := quietHost()
	r.Command = &report.Command{Argv: []string{"sh", "-c", hostileCmdline}, ExitCode: 0}
	r.CloseWait = report.CloseWait{Current: 2, ThresholdS: 30,
		Leaked: []report.Leak{{PID: 7, Comm: comm, Cmdline: hostileCmdline, Laddr: "127.0.0.1", Lport: 8080,
			Raddr: "127.0.0.1", Rport: 40000, AgeS: 99}},
		ByProcess: []report.LeakOwner{{PID: 7, Comm: comm, Cmdline: hostileCmdline, Count: 1, OldestS: 99,
			Lports: []int{8080}, Peers: []string{"127.0.0.1"}}},
	}
	r.PortExhaustion.ConnectFailures = 5
	r.PortExhaustion.ByProcess = []report.ProcessFailures{{PID: 8, Comm: comm, Failures: 5}}
	r.Recommendations = advisor.Advise(r)
	return r
}

func TestReportEscapesNames(t *testing.T) {
	for _, h := range hostileNames {
		r := hostileReport(h.comm)
		var text bytes.Buffer
		if err := WriteReportText(&text, r); err != nil {
			t.Fatal(err)
		}
		out := text.String()
		checkNoControls(t, "report text for "+strings.ToValidUTF8(h.comm, "?"), text.Bytes())
		// The summary, both CLOSE_WAIT tables, the port exhaustion
		// owners and the advice name the process.
		if n := strings.Count(out, h.text); n < 5 {
			t.Errorf("comm %q shown as %s %d times, want at least 5:\n%s", h.comm, h.text, n, out)
		}
		for _, want := range []string{`\x1b]52;c;cm0gLXJmIC8K\x07`, `\x1b[2J\x0aroot# \xff ÿ 中文`} {
			if !strings.Contains(out, want) {
				t.Errorf("command line not shown escaped (%s):\n%s", want, out)
			}
		}
		if strings.Contains(out, "\nroot# ") || strings.Contains(out, "\nFAKE LINE") {
			t.Errorf("a name forged a line of the report:\n%s", out)
		}

		var js bytes.Buffer
		if err := WriteReportJSON(&js, r); err != nil {
			t.Fatal(err)
		}
		var back report.Report
		if err := json.Unmarshal(js.Bytes(), &back); err != nil {
			t.Fatal(err)
		}
		if got, want := back.CloseWait.ByProcess[0].Comm, decodedJSON(h.comm); got != want {
			t.Errorf("report JSON comm %q, want %q", got, want)
		}
		if got, want := back.Command.Argv[2], decodedJSON(hostileCmdline); got != want {
			t.Errorf("report JSON argv %q, want %q", got, want)
		}
	}
}
