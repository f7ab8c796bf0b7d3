package session

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestCommandOutputTail(t *testing.T) {
	c := newCommandOutput()
	fmt.Fprint(c.Stdout(), "Running 10s test\r\n  2 threads\n")
	fmt.Fprint(c.Stderr(), "progress 10%\rprogress 50%\rprogress 100%\nhalf a li")
	fmt.Fprint(c.Stderr(), "ne")
	got := c.Tail(3)
	want := []string{"  2 threads", "progress 100%", "half a line"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Tail(3) = %q, want %q", got, want)
	}
	if c.endsInNewline() {
		t.Error("output ends in the middle of a line, endsInNewline says not")
	}
	for i := range 2 * tailLines {
		fmt.Fprintf(c.Stdout(), "line %d\n", i)
	}
	if got := c.Tail(1000); len(got) != tailLines || got[len(got)-1] != fmt.Sprintf("line %d", 2*tailLines-1) {
		t.Errorf("after many lines: %d kept, last %q", len(got), got[len(got)-1])
	}
	fmt.Fprint(c.Stdout(), strings.Repeat("x", 10*maxLineBytes)+"\n")
	if got := c.Tail(1); len(got[0]) != maxLineBytes {
		t.Errorf("a long line is kept at %d bytes, want %d", len(got[0]), maxLineBytes)
	}
}

// TestCommandOutputKeepsAll checks that everything written comes back, in
// memory and once spilled to a file.
func TestCommandOutputKeepsAll(t *testing.T) {
	for _, spill := range []int{1 << 20, 100} {
		c := newCommandOutput()
		c.spillAt, c.tempDir = spill, t.TempDir()
		var wantOut, wantErr bytes.Buffer
		for i := range 50 {
			fmt.Fprintf(c.Stdout(), "stdout %d\n", i)
			fmt.Fprintf(&wantOut, "stdout %d\n", i)
			if i%10 == 0 {
				fmt.Fprintf(c.Stderr(), "stderr %d\n", i)
				fmt.Fprintf(&wantErr, "stderr %d\n", i)
			}
		}
		if spill == 100 && c.streams[0].file == nil {
			t.Fatal("the output did not spill to a file")
		}
		var out, errs bytes.Buffer
		if err := c.WriteTo(&out, &errs); err != nil {
			t.Fatal(err)
		}
		if out.String() != wantOut.String() || errs.String() != wantErr.String() {
			t.Errorf("spill at %d: stdout %q, stderr %q", spill, out.String(), errs.String())
		}
	}
}
