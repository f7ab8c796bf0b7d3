package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcptrace/tcptrace/internal/testutil/testnet"
)

// runBinary runs the built tcptrace (no namespace, no root) and returns
// stdout, stderr and the exit status.
func runBinary(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

const v1Capture = "../../internal/capture/testdata/v1-leak.tcpcap"

// TestReadWithoutRoot: -r needs no privilege; bad files and flags that
// mean nothing on replay are clear errors with the documented status.
func TestReadWithoutRoot(t *testing.T) {
	stdout, stderr, code := runBinary(t, "-r", v1Capture, "-o", "json")
	if code != 0 || !strings.Contains(stdout, `"type":"report"`) || stderr != "" {
		t.Fatalf("replay: exit %d, stderr %q", code, stderr)
	}
	good, err := os.ReadFile(v1Capture)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"text", []byte("not a capture\n"), "not a tcptrace capture"},
		{"truncated", good[:len(good)/2], "ends abruptly"},
		{"corrupt", append(bytes.Clone(good[:len(good)-20]), bytes.Repeat([]byte{0x55}, 20)...), "corrupt"},
	} {
		p := filepath.Join(dir, c.name)
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := runBinary(t, "-r", p)
		if code != 1 || !strings.Contains(stderr, c.want) || strings.Contains(stderr, "goroutine") {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 saying %q, no stack trace", c.name, code, stderr, c.want)
		}
	}
	for _, args := range [][]string{
		{"-r", v1Capture, "-d", "5s"},
		{"-r", v1Capture, "--all-netns"},
		{"-r", v1Capture, "--", "true"},
	} {
		if _, stderr, code := runBinary(t, args...); code != 2 || !strings.Contains(stderr, "--read") && !strings.Contains(stderr, "replaying") {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 saying why", args, code, stderr)
		}
	}
	if _, stderr, code := runBinary(t, "-r", v1Capture, "--port", "1"); code != 0 || stderr != "" {
		t.Errorf("--port on replay: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := runBinary(t, "-r", v1Capture, "-w", v1Capture); code != 1 || !strings.Contains(stderr, "being read") {
		t.Errorf("-w onto -r: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := runBinary(t, "-r", v1Capture, "-w", filepath.Join(dir, "no", "such", "dir.tcpcap")); code != 1 || !strings.Contains(stderr, "capture file") {
		t.Errorf("-w to a missing directory: exit %d, stderr %q", code, stderr)
	}
}

// TestRecordReplayExact: a scenario recorded with -w replays, without
// root, into byte-identical outputs: the JSON report, the HTML page, and
// the event stream.
func TestRecordReplayExact(t *testing.T) {
	ns := testnet.New(t)
	dir := t.TempDir()
	capFile, page := filepath.Join(dir, "trace.tcpcap"), filepath.Join(dir, "live.html")
	live := runTcptrace(t, ns, "-q", "-o", "json", "-w", capFile, "--html", page, "--close-wait-threshold", "1s", "--",
		tcpchurnBinary(t), "-n", "2000", "-c", "4", "--close", "client", "-o", "json")
	if live.code != 0 {
		t.Fatalf("live run: exit %d, stderr %s", live.code, live.stderr)
	}
	replayPage := filepath.Join(dir, "replay.html")
	stdout, stderr, code := runBinary(t, "-r", capFile, "-o", "json", "--html", replayPage)
	if code != 0 || stderr != "" {
		t.Fatalf("replay: exit %d, stderr %s", code, stderr)
	}
	if stdout != live.stdout {
		t.Errorf("the replayed JSON report differs from the live one:\nlive   %s\nreplay %s", live.stdout, stdout)
	}
	a, _ := os.ReadFile(page)
	b, _ := os.ReadFile(replayPage)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("the replayed HTML page differs from the live one (%d and %d bytes)", len(a), len(b))
	}
	r := parseReport(t, stdout)
	if r.Events < 2000*10 {
		t.Errorf("%d events for 2000 connections: the capture lost some", r.Events)
	}

	// The event stream: -e output is the same live and replayed.
	capEvents := filepath.Join(dir, "events.tcpcap")
	liveEv := runTcptrace(t, ns, "-e", "-o", "json", "-w", capEvents, "--",
		tcpchurnBinary(t), "-n", "200", "-c", "2", "--close", "server")
	if liveEv.code != 0 {
		t.Fatalf("live -e: exit %d, stderr %s", liveEv.code, liveEv.stderr)
	}
	evOut, _, code := runBinary(t, "-r", capEvents, "-e", "-o", "json")
	if code != 0 || evOut != liveEv.stdout {
		t.Errorf("replayed -e JSON differs from the live stream (exit %d; %d and %d bytes)", code, len(liveEv.stdout), len(evOut))
	}
}
