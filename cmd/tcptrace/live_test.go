package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/testutil/testnet"
)

// terminal is a tmux server of the test's own, with one window.
type terminal struct {
	t    *testing.T
	tmux string
	sock string
}

func newTerminal(t *testing.T, width, height int, command string, options ...string) *terminal {
	t.Helper()
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Fatal("this test needs tmux (Debian package tmux): run scripts/setup.sh")
	}
	term := &terminal{t: t, tmux: tmux, sock: filepath.Join(t.TempDir(), "tmux.sock")}
	// remain-on-exit keeps the screen after the command ends, to read
	// what it left there.
	args := []string{"new-session", "-d", "-s", "live", "-x", fmt.Sprint(width), "-y", fmt.Sprint(height), command,
		";", "set-option", "-g", "-w", "remain-on-exit", "on"}
	for _, o := range options {
		args = append(args, ";", "set-option", "-g", "-w", o, "off")
	}
	term.run(args...)
	t.Cleanup(func() { _ = exec.Command(tmux, "-S", term.sock, "kill-server").Run() })
	return term
}

func (term *terminal) run(args ...string) string {
	term.t.Helper()
	out, err := exec.Command(term.tmux, append([]string{"-S", term.sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
	if err != nil {
		term.t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen is what the terminal shows now.
func (term *terminal) screen() string { return term.run("capture-pane", "-p", "-t", "live") }

// history is everything the terminal's normal screen holds, scrolled off
// or not, with wrapped lines joined.
func (term *terminal) history() string {
	return term.run("capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "live")
}

func (term *terminal) format(f string) string {
	return strings.TrimSpace(term.run("display-message", "-p", "-t", "live", f))
}

// waitFor polls until ok holds, for at most timeout: a loaded machine may
// take seconds to start tcptrace or to draw.
func (term *terminal) waitFor(what string, timeout time.Duration, ok func() bool) {
	term.t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			term.t.Fatalf("timed out after %s waiting for %s; the screen:\n%s", timeout, what, term.screen())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shellQuote quotes args for sh.
func shellQuote(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// TestLiveViewInTerminal runs tcptrace with its live view in a real
// terminal (tmux), with a command that behaves like wrk: it prints a line,
// runs until interrupted, then prints its summary. It checks that the
// view shows the TIME_WAIT sockets of n client-first closes and the
// command's line, that q stops tracing and interrupts the command, and
// that afterwards the terminal is back to normal (alternate screen left,
// cursor shown, canonical mode and echo on) with the command's whole
// output, then the report, on it.
func TestLiveViewInTerminal(t *testing.T) {
	ns := testnet.New(t)
	ns.Sysctl(t, "net.ipv4.tcp_fin_timeout", "30") // see TestEventsEndToEnd
	dir := t.TempDir()
	ready, stty := filepath.Join(dir, "ready"), filepath.Join(dir, "stty")
	command := `trap 'echo "summary printed on SIGINT"; exit 0' INT; echo "command started"; while :; do sleep 0.1; done`
	// After tcptrace, the shell records the terminal's modes and stays, so
	// that the terminal's state can be read (a dead pane has no cursor).
	inner := fmt.Sprintf("ip netns exec %s %s; echo \"tcptrace exited $?\"; stty -a > %s.tmp && mv %s.tmp %s; exec sleep 600",
		ns.Name, shellQuote(binary, "--ready-file", ready, "-i", "250ms", "--", "sh", "-c", command), shellQuote(stty), shellQuote(stty), shellQuote(stty))
	term := newTerminal(t, 120, 40, "sh -c "+shellQuote(inner))

	term.waitFor("tracing to start", 60*time.Second, func() bool {
		_, err := os.Stat(ready)
		return err == nil || term.format("#{pane_dead}") == "1"
	})
	term.waitFor("the view and the command's first line", 30*time.Second, func() bool {
		s := term.screen()
		return strings.Contains(s, "? help") && strings.Contains(s, "command started")
	})
	if got := term.format("#{alternate_on}"); got != "1" {
		t.Errorf("the view does not use the alternate screen (alternate_on=%s)", got)
	}

	const n = 50
	connect(t, ns, n)
	ns.Settle(t, event.TimeWait)
	population := regexp.MustCompile(fmt.Sprintf(`TIME_WAIT %d +peak %d `, n, n))
	destination := regexp.MustCompile(fmt.Sprintf(`client 127\.0\.0\.1:\d+ +%d +%d +%d `, n, n, n))
	term.waitFor(fmt.Sprintf("the view to show %d TIME_WAIT sockets", n), 30*time.Second, func() bool {
		s := term.screen()
		return population.MatchString(s) && destination.MatchString(s)
	})

	term.run("send-keys", "-t", "live", "q")
	term.waitFor("tcptrace to exit after q", 60*time.Second, func() bool {
		_, err := os.Stat(stty)
		return err == nil || term.format("#{pane_dead}") == "1"
	})
	// tmux parses a pane's output some time after it is written (on a
	// loaded machine, long after): what the terminal shows is final once
	// the shell's line after tcptrace has been parsed.
	term.waitFor("the terminal to show all of tcptrace's output", 30*time.Second, func() bool {
		return strings.Contains(term.history(), "tcptrace exited")
	})

	if got := term.format("#{alternate_on} #{cursor_flag}"); got != "0 1" {
		t.Errorf("terminal after exit: alternate_on cursor_flag = %q, want \"0 1\" (normal screen, cursor shown)", got)
	}
	modes, err := os.ReadFile(stty)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"icanon", "echo", "isig"} {
		if !regexp.MustCompile(`(^|\s)` + mode + `(\s|$)`).Match(modes) {
			t.Errorf("terminal left without %s: stty -a says:\n%s", mode, modes)
		}
	}

	out := term.history()
	order := []string{"command started", "summary printed on SIGINT", "tcptrace report:", fmt.Sprintf("%d TIME_WAIT sockets at peak", n), "tcptrace exited 0"}
	at := 0
	for _, want := range order {
		i := strings.Index(out[at:], want)
		if i < 0 {
			t.Fatalf("after the view closed, want %q (in the order %q); the terminal holds:\n%s", want, order, out)
		}
		at += i + len(want)
	}
	if strings.Contains(out, "? help") || strings.Contains(out, "TIME_WAIT destinations") {
		t.Errorf("the view's frame was left on the normal screen:\n%s", out)
	}
}

// TestLiveViewOffInTerminal checks that -q, -o json and --no-live keep
// today's output in a terminal: no view. The terminal ignores the
// alternate screen here, so a view would leave its frames in the
// terminal's history.
func TestLiveViewOffInTerminal(t *testing.T) {
	ns := testnet.New(t)
	for _, tc := range []struct {
		args []string
		want string // in what the terminal shows afterwards
	}{
		{[]string{"-q"}, "tcptrace report:"},
		{[]string{"-o", "json"}, `{"type":"report"`},
		{[]string{"--no-live"}, "tcptrace report:"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append(append([]string{binary}, tc.args...), "-d", "500ms", "--", "sh", "-c", "echo command output")
			// The shell stays after tcptrace: tmux discards the output of
			// a pane's process it has not parsed yet when the process
			// exits (tmux issue 506), and on a loaded machine that cut
			// off the end of the JSON report and the line below.
			inner := fmt.Sprintf("ip netns exec %s %s; echo \"tcptrace exited $?\"; exec sleep 600", ns.Name, shellQuote(args...))
			term := newTerminal(t, 100, 30, "sh -c "+shellQuote(inner), "alternate-screen")
			term.waitFor("tcptrace to exit", 60*time.Second, func() bool { return strings.Contains(term.history(), "tcptrace exited") })
			out := term.history()
			if !strings.Contains(out, "command output") || !strings.Contains(out, tc.want) || !strings.Contains(out, "tcptrace exited 0") {
				t.Errorf("want the command's output, %q and exit 0; the terminal holds:\n%s", tc.want, out)
			}
			if strings.Contains(out, "? help") || strings.Contains(out, "TIME_WAIT destinations") {
				t.Errorf("the live view ran:\n%s", out)
			}
		})
	}
}
