package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/testutil/testnet"
)

// binary is the tcptrace built for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	if os.Getenv("TCPTRACE_TEST_HOSTILE") != "" || os.Getenv("TCPTRACE_TEST_LEAKER") != "" {
		// A helper process (TestHostileNameHelper, the incident tests'
		// leaker) needs no tcptrace build: building it again there took
		// longer than the test waits for the helper on a loaded machine.
		os.Exit(m.Run())
	}
	code := func() int {
		dir, err := os.MkdirTemp("", "tcptrace-e2e")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "tcptrace")
		// scripts/test-kernels.sh runs this test binary in VMs that have
		// no Go toolchain: it hands over tcptrace and tcpchurn built
		// beforehand.
		if prebuilt := os.Getenv("TCPTRACE_TEST_BINARIES"); prebuilt != "" {
			binary = filepath.Join(prebuilt, "tcptrace")
			churnBin = filepath.Join(prebuilt, "tcpchurn")
			return m.Run()
		}
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

// TestEventsEndToEnd checks every JSON event of n client-first closes.
// Each client's close leaves one mini-socket, in either of two orders the
// kernel legitimately takes: it starts as TIME_WAIT (the server's FIN came
// with, or before, its ACK of ours), or as a FIN_WAIT2 orphan (the ACK came
// first) that the server's FIN then re-arms as TIME_WAIT. Both are the
// active closer's TIME_WAIT. tcp_fin_timeout is 30 s here so that the
// orphan's re-arm always moves its timer to another timer-wheel bucket and
// the kernel traces it: with the default 60 s the new expiry usually lands
// in the same bucket and the kernel re-arms silently (see event.Resolver).
// It runs twice: with the loopback's default delayed ACKs, where most
// mini-sockets start as TIME_WAIT, and with quickack on the route (see
// TestScenarioOrphanPromotionByRole), where most start as orphans.
func TestEventsEndToEnd(t *testing.T) {
	t.Run("delayed-ack", func(t *testing.T) { testEventsEndToEnd(t, false) })
	t.Run("quickack", func(t *testing.T) { testEventsEndToEnd(t, true) })
}

// setQuickack makes the namespace's loopback ACK every segment at once.
func setQuickack(t *testing.T, ns *testnet.NS) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", ns.Name, "route", "change", "local", "127.0.0.1", "dev", "lo",
		"table", "local", "proto", "kernel", "scope", "host", "src", "127.0.0.1", "quickack", "1").CombinedOutput(); err != nil {
		t.Fatalf("setting quickack: %v: %s", err, out)
	}
}

func testEventsEndToEnd(t *testing.T, quickack bool) {
	ns := testnet.New(t)
	ns.Sysctl(t, "net.ipv4.tcp_fin_timeout", "30")
	if quickack {
		setQuickack(t, ns)
	}
	tt := startTcptrace(t, ns, "-e", "-o", "json")
	const n = 50
	connect(t, ns, n)
	ns.Settle(t, event.TimeWait)
	if code := tt.stop(t); code != 0 {
		t.Fatalf("exit %d after SIGINT, want 0; stderr: %s", code, tt.stderr.String())
	}

	kinds := map[string]int{}
	// substate of each live mini-socket, by skaddr.
	mini := map[string]string{}
	timeWait, fromOrphans := 0, 0
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
		sk, _ := ev["skaddr"].(string)
		expires, _ := ev["expires_ms"].(float64)
		switch kind {
		case "transition":
			kind += ":" + ev["oldstate"].(string) + "->" + ev["newstate"].(string)
			if kind == "transition:CLOSE->SYN_SENT" && int(ev["pid"].(float64)) != os.Getpid() {
				t.Errorf("SYN_SENT pid %v, want the test's %d", ev["pid"], os.Getpid())
			}
			if _, ok := ev["prev_state_ms"].(float64); !ok {
				t.Errorf("transition without prev_state_ms: %s", sc.Text())
			}
		case "timewait_start":
			switch sub := ev["substate"]; {
			case sub == "TIME_WAIT" && expires >= 59000 && expires <= 61000:
				timeWait++
			case sub == "FIN_WAIT2" && expires >= 29000 && expires <= 31000:
			default:
				t.Errorf("mini-socket start %s: want TIME_WAIT for 60 s or a FIN_WAIT2 orphan for tcp_fin_timeout (30 s)", sc.Text())
			}
			if _, dup := mini[sk]; dup {
				t.Errorf("second start of live mini-socket %s", sc.Text())
			}
			mini[sk], _ = ev["substate"].(string)
		case "timewait_rearm":
			if mini[sk] != "FIN_WAIT2" || ev["prev_substate"] != "FIN_WAIT2" || ev["substate"] != "TIME_WAIT" ||
				expires < 59000 || expires > 61000 {
				t.Errorf("re-arm %s of a mini-socket last seen as %q: want only FIN_WAIT2 orphans re-armed, as TIME_WAIT for 60 s",
					sc.Text(), mini[sk])
			}
			if mini[sk] == "FIN_WAIT2" {
				fromOrphans++
			}
			mini[sk], _ = ev["substate"].(string)
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
	// Every client's mini-socket ended up TIME_WAIT, directly or through
	// an orphan's re-arm.
	if timeWait+fromOrphans != n {
		t.Errorf("%d TIME_WAIT starts + %d orphans re-armed as TIME_WAIT = %d, want one per close (%d); events: %v",
			timeWait, fromOrphans, timeWait+fromOrphans, n, kinds)
	}
	t.Logf("%d mini-sockets started as TIME_WAIT, %d as FIN_WAIT2 orphans", timeWait, fromOrphans)
	if summary == nil || summary["dropped"].(float64) != 0 {
		t.Errorf("summary %v: want one, with 0 dropped", summary)
	}
	if h := summary["hooks"]; h != "fentry" && h != "tracepoints" {
		t.Errorf("summary hooks %v, want fentry or tracepoints", h)
	}
}

func TestEventsTextAndBadInput(t *testing.T) {
	ns := testnet.New(t)
	ns.Sysctl(t, "net.ipv4.tcp_fin_timeout", "30") // orphans re-armed visibly: see TestEventsEndToEnd
	tt := startTcptrace(t, ns, "-e")
	connect(t, ns, 3)
	ns.Settle(t, event.TimeWait)
	if code := tt.stop(t); code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, tt.stderr.String())
	}
	out := tt.stdout.String()
	// Each close's TIME_WAIT, started as such or re-armed from an orphan.
	tw := strings.Count(out, "+ TIME_WAIT for") + strings.Count(out, "~ TIME_WAIT re-armed")
	if !strings.HasPrefix(out, "TIME ") || strings.Count(out, "ESTABLISHED -> FIN_WAIT1") != 3 || tw != 3 {
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

// firstLine waits, up to timeout, for the first line a child process
// writes to r, failing the test with what it was waiting for.
func firstLine(t *testing.T, r io.Reader, timeout time.Duration, waitingFor string) string {
	t.Helper()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		return s
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, waitingFor)
	}
	return ""
}

// hostileComm is the name the helper process gives itself: a screen
// clear and a colour change (14 bytes; comm holds 15).
const hostileComm = "x\x1b[2J\x1b[31mEVIL"

// hostileArgs are the helper's command-line arguments: an OSC 52
// clipboard write, a screen clear with a forged prompt on a new line, an
// invalid byte, and valid UTF-8 that must come out as it is.
var hostileArgs = []string{"\x1b]52;c;cm0gLXJmIC8K\x07", "\x1b[2J\nroot#", "\xff", "ÿ中文"}

// TestHostileNameHelper is not a test: TestHostileProcessName runs the test
// binary as a process that renames itself to hostileComm, makes three
// connections to its own listener from the renamed thread, closes their
// client ends and holds the accepted ends in CLOSE_WAIT until stdin closes.
func TestHostileNameHelper(t *testing.T) {
	if os.Getenv("TCPTRACE_TEST_HOSTILE") == "" {
		return // run only as the helper process of TestHostileProcessName
	}
	// The kernel names the task in the connect() and close() system
	// calls: this thread. /proc/PID/comm, which owner resolution reads,
	// is the main thread's, which /proc/self/comm renames.
	runtime.LockOSThread()
	name := append([]byte(hostileComm), 0)
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/proc/self/comm", []byte(hostileComm), 0); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, s)
		c.Close()
	}
	fmt.Println("holding")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, s := range held {
		s.Close()
	}
}

// TestHostileProcessName: a process named with escape sequences, with a
// command line full of them, connects and leaks CLOSE_WAIT sockets while
// tcptrace -e and tcptrace (report) run. Neither text output may hold a
// raw ESC, BEL or other control character; both show the name escaped.
func TestHostileProcessName(t *testing.T) {
	ns := testnet.New(t)
	events := startTcptrace(t, ns, "-e")
	rep := startTcptrace(t, ns, "-q", "--close-wait-threshold", "0s")

	helper := ns.Command(os.Args[0], append([]string{"-test.run=^TestHostileNameHelper$", "--"}, hostileArgs...)...)
	helper.Env = append(os.Environ(), "TCPTRACE_TEST_HOSTILE=1")
	stdin, err := helper.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = helper.Wait()
	})
	if s := firstLine(t, out, 15*time.Second, "the helper making its connections"); s != "holding\n" {
		t.Fatalf("helper said %q", s)
	}
	// The helper holds its three accepted sockets in CLOSE_WAIT; the
	// client ends are orphans waiting for a FIN that never comes.
	ns.Settle(t, event.CloseWait, event.FinWait2, event.Listen)

	for _, tt := range []*started{events, rep} {
		if code := tt.stop(t); code != 0 {
			t.Fatalf("exit %d; stderr: %s", code, tt.stderr.String())
		}
	}
	const escaped = `x\x1b[2J\x1b[31mEVIL`
	for _, o := range []struct {
		what string
		text string
		want []string
	}{
		{"tcptrace -e", events.stdout.String(), []string{escaped + " "}},
		{"the report", rep.stdout.String(), []string{
			escaped + " (pid ",    // summary and advice
			"  " + escaped + "  ", // CLOSE_WAIT tables
			// The command line in the advice's evidence (wrapped at spaces).
			`\x1b]52;c;cm0gLXJmIC8K\x07`, `\x1b[2J\x0aroot#`, ` \xff `, `ÿ中文"`,
		}},
	} {
		if i := strings.IndexFunc(o.text, func(r rune) bool {
			return r < 0x20 && r != '\n' || r == 0x7f || r >= 0x80 && r <= 0x9f || r == utf8.RuneError
		}); i >= 0 {
			t.Errorf("%s holds a raw control character or invalid UTF-8 at byte %d:\n%q", o.what, i, o.text)
		}
		for _, w := range o.want {
			if !strings.Contains(o.text, w) {
				t.Errorf("%s does not show %q:\n%s", o.what, w, o.text)
			}
		}
	}
	if n := strings.Count(events.stdout.String(), escaped); n < 6 {
		t.Errorf("tcptrace -e names the helper %d times, want its 3 connect()s and 3 close()s:\n%s", n, events.stdout.String())
	}
}
