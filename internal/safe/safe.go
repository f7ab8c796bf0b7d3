// Package safe makes outside strings (process names, command lines: any
// process can set its own to anything) safe to print. Text escapes what a
// terminal or a viewer would act on instead of showing, so a name such as
// "x\x1b[2J" cannot clear root's screen, set the window title or write the
// clipboard (OSC 52); JSON quotes a string so that it decodes to exactly
// the original wherever the original is valid UTF-8.
//
// The human-readable outputs (events, report, status line, live view,
// HTML) run every outside string through Text; the JSON outputs through
// AppendJSON or encoding/json, which agree byte for byte.
package safe

import (
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// Text returns s with everything a terminal would act on escaped, and
// everything else, valid UTF-8 included (ÿ, 中文), as it is:
//   - C0 controls and DEL (ESC, BEL, CR, LF, TAB...) as \x1b, \x07, \x0a...
//   - bytes that are not valid UTF-8 as \xff, one escape per byte
//   - C1 controls (U+0080-U+009F; U+009B is CSI in some terminals), the
//     bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069,
//     which reorder what is shown: "Trojan source"), the bidi marks
//     U+200E/U+200F, and the line and paragraph separators U+2028/U+2029,
//     as \u009b, \u202e...
//
// A backslash is left alone, so Text is idempotent: escaping a string
// twice, say in the advisor and again in the renderer, changes nothing
// more. The price is that a name that spells out "\x1b" itself looks like
// an escaped one; it does nothing to the terminal either way.
func Text(s string) string {
	if !needsEscape(s) {
		return s
	}
	return string(AppendText(make([]byte, 0, len(s)+16), s))
}

// AppendText appends Text(s) to b without allocating beyond b's growth,
// for the event printer's hot path.
func AppendText[S string | []byte](b []byte, s S) []byte {
	return appendEscaped(b, s, false)
}

// Quote returns s in double quotes, escaped as Text escapes it, with '"'
// and '\' escaped as well so that the quoted string ends where it seems
// to: for a command line quoted in a sentence. Unlike strconv.Quote it
// writes the same escapes as Text (\x07, not \a), so a name reads the
// same wherever it is printed.
func Quote(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	b = appendEscaped(b, s, true)
	return string(append(b, '"'))
}

func appendEscaped[S string | []byte](b []byte, s S, quoted bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if quoted && (c == '"' || c == '\\') {
			b = append(b, '\\', c)
			i++
			continue
		}
		if c >= 0x20 && c < 0x7f {
			b = append(b, c)
			i++
			continue
		}
		if c < 0x80 {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			i++
			continue
		}
		r, size := decodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		case unsafeRune(r):
			b = append(b, '\\', 'u',
				hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

// needsEscape reports whether Text would change s.
func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		if c < 0x80 {
			return true
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || unsafeRune(r) {
			return true
		}
		i += size
	}
	return false
}

// unsafeRune reports whether a valid rune of two or more bytes is one that
// Text escapes.
func unsafeRune(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f: // C1 controls
		return true
	case r == 0x200e || r == 0x200f: // LRM, RLM
		return true
	case r >= 0x2028 && r <= 0x202e: // LS, PS, LRE, RLE, PDF, LRO, RLO
		return true
	case r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	}
	return false
}

func decodeRune[S string | []byte](s S) (rune, int) {
	switch v := any(s).(type) {
	case string:
		return utf8.DecodeRuneInString(v)
	case []byte:
		return utf8.DecodeRune(v)
	}
	return utf8.RuneError, 1
}

// AppendJSON appends s as a JSON string, quotes included, byte for byte as
// encoding/json writes it with SetEscapeHTML(false) (as the report is
// written), so that a name reads the same in the events and the report:
// valid UTF-8 is kept as it is; '"' and '\' are escaped; control
// characters below 0x20 become \n, \t, \r, \b, \f or \u00XX; U+2028 and
// U+2029 become \u2028 and \u2029; and each byte that is not valid UTF-8
// becomes \ufffd, the replacement character, since a JSON string can only
// hold Unicode text. It allocates nothing beyond b's growth.
func AppendJSON[S string | []byte](b []byte, s S) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := decodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == 0x2028 || r == 0x2029:
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
