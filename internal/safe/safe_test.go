package safe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// hostile are names and command lines a process can give itself.
var hostile = []struct {
	name, in, text string
}{
	{"plain", "nginx", "nginx"},
	{"empty", "", ""},
	{"clear screen and colour", "x\x1b[2J\x1b[31mEVIL", `x\x1b[2J\x1b[31mEVIL`},
	{"OSC 52 clipboard write", "\x1b]52;c;ZXZpbA==\x07", `\x1b]52;c;ZXZpbA==\x07`},
	{"OSC 0 window title, ST end", "\x1b]0;pwned\x1b\\", `\x1b]0;pwned\x1b\`},
	{"newline and CR forge a line", "a\nb\rc\td", `a\x0ab\x0dc\x09d`},
	{"NUL and DEL", "a\x00b\x7f", `a\x00b\x7f`},
	{"invalid UTF-8", "\xff\xfeok", `\xff\xfeok`},
	{"truncated UTF-8", "ab\xc3", `ab\xc3`},
	{"overlong slash", "\xc0\xaf", `\xc0\xaf`},
	{"surrogate half", "\xed\xa0\x80", `\xed\xa0\x80`},
	{"valid y-diaeresis", "\xc3\xbf", "ÿ"},
	{"valid CJK", "中文进程", "中文进程"},
	{"emoji with ZWJ", "👩‍💻", "👩‍💻"},
	{"C1 CSI as UTF-8", "a\u009b2Jb", `a\u009b2Jb`},
	{"NEL", "a\u0085b", `a\u0085b`},
	{"bidi override", "txt\u202egnp.exe", `txt\u202egnp.exe`},
	{"bidi isolate", "\u2066a\u2069", `\u2066a\u2069`},
	{"line separator", "a\u2028b", `a\u2028b`},
	{"backslash kept", `C:\dir\x1b`, `C:\dir\x1b`},
}

func TestText(t *testing.T) {
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			got := Text(tc.in)
			if got != tc.text {
				t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.text)
			}
			if b := AppendText([]byte("pre "), []byte(tc.in)); string(b) != "pre "+tc.text {
				t.Errorf("AppendText(%q) = %q", tc.in, b)
			}
			checkSafe(t, got)
			if again := Text(got); again != got {
				t.Errorf("Text is not idempotent: %q -> %q", got, again)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                          `""`,
		"nginx: worker process":     `"nginx: worker process"`,
		"sh -c \"a\\b\"":            `"sh -c \"a\\b\""`,
		"\x1b]52;c;eA==\x07 \xff ÿ": `"\x1b]52;c;eA==\x07 \xff ÿ"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
		checkSafe(t, Quote(in))
	}
}

// checkSafe fails if s holds anything a terminal acts on.
func checkSafe(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("%q is not valid UTF-8", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || unsafeRune(r) {
			t.Errorf("%q holds %U", s, r)
		}
	}
}

// TestAppendJSONMatchesEncodingJSON: the events and the report write
// strings identically, so a name reads the same in both.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	inputs := []string{"\x1b]52;c;ZXZpbA==\x07", "\"quoted\" \\ back", "\b\f\n\r\t\v", "<&>", "\u2028\u2029"}
	for _, tc := range hostile {
		inputs = append(inputs, tc.in)
	}
	for c := range 256 {
		inputs = append(inputs, "a"+string([]byte{byte(c)})+"z")
	}
	for _, in := range inputs {
		checkJSON(t, in)
	}
	// Valid UTF-8 is kept byte for byte, not escaped.
	for _, in := range []string{"ÿ", "中文进程", "👩‍💻", "a\u009bb"} {
		if got := string(AppendJSON(nil, in)); got != `"`+in+`"` {
			t.Errorf("AppendJSON(%q) = %s, want the bytes as they are", in, got)
		}
	}
	if got := string(AppendJSON(nil, "x\xffy")); got != `"x\ufffdy"` {
		t.Errorf(`AppendJSON("x\xffy") = %s, want "x\ufffdy"`, got)
	}
}

func checkJSON(t *testing.T, in string) {
	t.Helper()
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(in); err != nil {
		t.Fatal(err)
	}
	got := AppendJSON(nil, []byte(in))
	if string(got) != strings.TrimSuffix(want.String(), "\n") {
		t.Errorf("AppendJSON(%q) = %s, encoding/json writes %s", in, got, want.String())
	}
	if s := string(AppendJSON(nil, in)); s != string(got) {
		t.Errorf("AppendJSON of string %q = %s, of []byte %s", in, s, got)
	}
	var back string
	if err := json.Unmarshal(got, &back); err != nil {
		t.Errorf("AppendJSON(%q) = %s: not JSON: %v", in, got, err)
	}
	if utf8.ValidString(in) && back != in {
		t.Errorf("AppendJSON(%q) decodes to %q", in, back)
	}
}

func FuzzText(f *testing.F) {
	for _, tc := range hostile {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Text(in)
		checkSafe(t, out)
		if Text(out) != out {
			t.Errorf("not idempotent: %q -> %q", out, Text(out))
		}
		if utf8.ValidString(in) && !needsEscape(in) && out != in {
			t.Errorf("changed %q to %q", in, out)
		}
		checkJSON(t, in)
	})
}

func TestNoAllocs(t *testing.T) {
	b := make([]byte, 0, 256)
	comm := []byte("x\x1b[2J\xff中")
	if n := testing.AllocsPerRun(100, func() { b = AppendText(b[:0], comm) }); n != 0 {
		t.Errorf("AppendText allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { b = AppendJSON(b[:0], comm) }); n != 0 {
		t.Errorf("AppendJSON allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = Text("nginx: worker process") }); n != 0 {
		t.Errorf("Text of a harmless string allocates %v times", n)
	}
}
