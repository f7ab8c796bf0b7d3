package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/testnet"
)

// binary is the tcptrace built for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "tcptrace-e2e")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "tcptrace")
		if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building tcptrace: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// started runs the built tcptrace inside ns and waits until it traces.
type started struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
}

func startTcptrace(t *testing.T, ns *testnet.NS, args ...string) *started {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	s := &started{}
	s.cmd = ns.Command(binary, append([]string{"--ready-file", ready}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.cmd.Process.Kill() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcptrace did not start tracing: %s", s.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop interrupts tcptrace like Ctrl-C and returns its exit code.
func (s *started) stop(t *testing.T) int {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(15 * time.Second):
		t.Fatalf("tcptrace did not exit after SIGINT; stderr: %s", s.stderr.String())
	}
	return -1
}

// connect makes n loopback connections in the namespace, the client
// closing first.
func connect(t *testing.T, ns *testnet.NS, n int) {
	ns.Do(t, func() error { return testnet.Connect("tcp4", "127.0.0.1:0", n, false) })
}

func TestEventsEndToEnd(t *testing.T) {
	ns := testnet.New(t)
	tt := startTcptrace(t, ns, "-e", "-o", "json")
	const n = 50
	connect(t, ns, n)
	time.Sleep(200 * time.Millisecond)
	if code := tt.stop(t); code != 0 {
		t.Fatalf("exit %d after SIGINT, want 0; stderr: %s", code, tt.stderr.String())
	}

	kinds := map[string]int{}
	var summary map[string]any
	sc := bufio.NewScanner(&tt.stdout)
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("not JSON: %q: %v", sc.Text(), err)
		}
		if ev["type"] == "summary" {
			summary = ev
			continue
		}
		if ev["type"] != "event" {
			t.Fatalf("line of type %v", ev["type"])
		}
		for _, k := range []string{"kind", "time", "ts_ns", "skaddr", "pid", "comm", "netns", "family", "saddr", "sport", "daddr", "dport"} {
			if _, ok := ev[k]; !ok {
				t.Fatalf("event lacks %q: %s", k, sc.Text())
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, ev["time"].(string)); err != nil {
			t.Errorf("time %v: %v", ev["time"], err)
		}
		kind := ev["kind"].(string)
		if kind == "transition" {
			kind += ":" + ev["oldstate"].(string) + "->" + ev["newstate"].(string)
			if kind == "transition:CLOSE->SYN_SENT" && int(ev["pid"].(float64)) != os.Getpid() {
				t.Errorf("SYN_SENT pid %v, want the test's %d", ev["pid"], os.Getpid())
			}
			if _, ok := ev["prev_state_ms"].(float64); !ok {
				t.Errorf("transition without prev_state_ms: %s", sc.Text())
			}
		}
		if kind == "timewait_start" && (ev["substate"] != "TIME_WAIT" || ev["expires_ms"].(float64) < 59000) {
			t.Errorf("TIME_WAIT start %s", sc.Text())
		}
		kinds[kind]++
	}
	for k, want := range map[string]int{
		"transition:CLOSE->SYN_SENT": n, "transition:ESTABLISHED->FIN_WAIT1": n,
		"transition:ESTABLISHED->CLOSE_WAIT": n, "transition:LAST_ACK->CLOSE": n,
		"transition:FIN_WAIT2->CLOSE": n, "timewait_start": n,
	} {
		if kinds[k] != want {
			t.Errorf("%s: %d, want %d (all: %v)", k, kinds[k], want, kinds)
		}
	}
	if summary == nil || summary["dropped"].(float64) != 0 {
		t.Errorf("summary %v: want one, with 0 dropped", summary)
	}
}

func TestEventsTextAndBadInput(t *testing.T) {
	ns := testnet.New(t)
	tt := startTcptrace(t, ns, "-e")
	connect(t, ns, 3)
	time.Sleep(200 * time.Millisecond)
	if code := tt.stop(t); code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, tt.stderr.String())
	}
	out := tt.stdout.String()
	if !strings.HasPrefix(out, "TIME ") || strings.Count(out, "ESTABLISHED -> FIN_WAIT1") != 3 || strings.Count(out, "+ TIME_WAIT") != 3 {
		t.Errorf("text output:\n%s", out)
	}

	cmd := exec.Command(binary, "--definitely-not-a-flag")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Contains(stderr.String(), "goroutine") ||
		!strings.Contains(stderr.String(), "unknown flag") || strings.Contains(stderr.String(), "Usage:") {
		t.Errorf("unknown flag: %v, stderr %q; want exit 2 with the error and the --help hint, no usage text, no stack trace", err, stderr.String())
	}
}
