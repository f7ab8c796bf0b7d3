package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/churn"
)

// runCLI runs cli with args and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli(t.Context(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "tcpchurn: unknown flag: --bogus\n"},
		{[]string{"-x"}, "tcpchurn: unknown shorthand flag: 'x' in -x\n"},
		{[]string{"-n", "lots"}, `tcpchurn: invalid argument "lots" for "-n, --connections" flag`},
		{[]string{"--hold", "1"}, `tcpchurn: invalid argument "1" for "--hold" flag`},
		{[]string{"extra"}, "tcpchurn: unexpected argument \"extra\"\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if !strings.HasPrefix(stderr, tt.want) || !strings.Contains(stderr, "Usage: tcpchurn") {
				t.Errorf("stderr = %q, want %q then the usage", stderr, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		code, stdout, stderr := runCLI(t, arg)
		if code != 0 || stderr != "" || !strings.Contains(stdout, "--keep-going") {
			t.Errorf("%s: exit %d, stderr %q, stdout %q; want 0, nothing, the usage", arg, code, stderr, stdout)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--close", "both"}, `tcpchurn: close must be client, server or leak, got "both"` + "\n"},
		{[]string{"-n", "0"}, "tcpchurn: connections must be > 0, got 0\n"},
		{[]string{"-o", "yaml"}, `tcpchurn: output must be text or json, got "yaml"` + "\n"},
		{[]string{"--serve", "127.0.0.1:0", "-n", "5"}, "tcpchurn: --connections does not apply to --serve\n"},
		{[]string{"--serve", ""}, "tcpchurn: --serve needs an address such as 127.0.0.1:8080\n"},
		{[]string{"--hold", "1s"}, "tcpchurn: hold only applies to leak mode with the built-in server\n"},
		{[]string{"-t", "nowhere"}, `tcpchurn: target "nowhere": want host:port` + "\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != 1 || stderr != tt.want || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, stdout, stderr, tt.want)
			}
		})
	}
}

func TestTextOutput(t *testing.T) {
	code, stdout, stderr := runCLI(t, "-n", "50", "-c", "2", "--close", "client")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	re := regexp.MustCompile(`^50 connections in \d+\.\d\ds: \d+ conn/s \(close=client, concurrency=2, 127\.0\.0\.1:\d+\); 502 transitions; 0 connect errors\n$`)
	if !re.MatchString(stdout) {
		t.Errorf("stdout = %q, want it to match %s", stdout, re)
	}
}

func TestJSONOutput(t *testing.T) {
	code, stdout, stderr := runCLI(t, "-n", "30", "-c", "3", "-o", "json", "--payload", "5")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"close", "concurrency", "connect_calls", "connect_errors", "connections", "eaddrnotavail", "elapsed_s", "per_second", "pid", "server", "transitions"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}
	if got["connections"] != 30.0 || got["transitions"] != 302.0 || got["close"] != "server" || got["concurrency"] != 3.0 {
		t.Errorf("got %v", got)
	}
}

func TestLeakOutputOnce(t *testing.T) {
	code, stdout, stderr := runCLI(t, "-n", "20", "--close", "leak", "--hold", "50ms")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if strings.Count(stdout, "\n") != 1 || !strings.Contains(stdout, "transitions not predictable") {
		t.Errorf("stdout = %q, want one summary line", stdout)
	}
}

func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli(ctx, []string{"--serve", "127.0.0.1:0", "--close", "client", "--payload", "7"}, pw, &stderr)
		pw.Close()
	}()

	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the listening line: %v (stderr %q)", err, stderr.String())
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("first line %q, want listening on ADDR", line)
	}
	go io.Copy(io.Discard, pr)

	res, err := churn.Run(t.Context(), churn.Config{Connections: 40, Concurrency: 2, Close: churn.CloseClient, Payload: 7, Target: addr})
	if err != nil || res.Connections != 40 {
		t.Errorf("run against --serve: %+v, %v", res, err)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 || stderr.Len() != 0 {
			t.Errorf("--serve exited %d, stderr %q; want 0 and nothing", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("--serve did not stop when its context was cancelled")
	}
}

func TestServeListenError(t *testing.T) {
	code, _, stderr := runCLI(t, "--serve", "127.0.0.1:99999")
	if code != 1 || !strings.HasPrefix(stderr, "tcpchurn: listen tcp: address 99999: invalid port") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
