package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/probe"
	"github.com/tcptrace/tcptrace/internal/session"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		check   func(t *testing.T, o session.Options)
		wantErr string
	}{
		{args: nil, check: func(t *testing.T, o session.Options) {
			if o.Events || o.JSON || o.Interval != time.Second || o.CloseWaitThreshold != 30*time.Second ||
				o.RingBytes != 8<<20 || o.MaxSockets != 1_000_000 || o.Hooks != probe.HooksAuto {
				t.Errorf("defaults: %+v", o)
			}
		}},
		{args: []string{"-e", "-o", "json", "-d", "5s", "-p", "42", "--port", "8080", "-6", "--all-netns", "-q"},
			check: func(t *testing.T, o session.Options) {
				if !o.Events || !o.JSON || o.Duration != 5*time.Second || o.PID != 42 || o.Port != 8080 ||
					o.Family != event.IPv6 || !o.AllNetNS || !o.Quiet {
					t.Errorf("parsed %+v", o)
				}
			}},
		{args: []string{"--events", "--output=text", "-4", "--interval", "250ms", "--close-wait-threshold", "1m"},
			check: func(t *testing.T, o session.Options) {
				if !o.Events || o.JSON || o.Family != event.IPv4 || o.Interval != 250*time.Millisecond ||
					o.CloseWaitThreshold != time.Minute {
					t.Errorf("parsed %+v", o)
				}
			}},
		{args: []string{"-d", "3s", "--", "wrk", "-c", "10", "http://127.0.0.1/"},
			check: func(t *testing.T, o session.Options) {
				if strings.Join(o.Command, " ") != "wrk -c 10 http://127.0.0.1/" || o.Duration != 3*time.Second {
					t.Errorf("command %q duration %s", o.Command, o.Duration)
				}
			}},
		{args: []string{"sleep", "1"}, check: func(t *testing.T, o session.Options) {
			if strings.Join(o.Command, " ") != "sleep 1" {
				t.Errorf("command %q", o.Command)
			}
		}},
		{args: []string{"--snapshot", "-o", "json", "--port", "80", "-4", "--close-wait-threshold", "10s", "-q"},
			check: func(t *testing.T, o session.Options) {
				if !o.Snapshot || !o.JSON || o.Port != 80 || o.Family != event.IPv4 || o.CloseWaitThreshold != 10*time.Second {
					t.Errorf("parsed %+v", o)
				}
			}},
		{args: []string{"--snapshot", "-e"}, wantErr: "--events does not apply"},
		{args: []string{"--snapshot", "-d", "5s"}, wantErr: "--duration does not apply"},
		{args: []string{"--snapshot", "-p", "1"}, wantErr: "--pid does not apply"},
		{args: []string{"--snapshot", "--metrics", ":9877"}, wantErr: "--metrics does not apply"},
		{args: []string{"--snapshot", "--", "sleep", "1"}, wantErr: "COMMAND does not apply"},
		{args: []string{"--snapshot", "--all-netns"}, wantErr: "ip netns exec NS tcptrace --snapshot"},
		{args: []string{"--bogus"}, wantErr: "unknown flag: --bogus"},
		{args: []string{"--hooks", "kprobes"}, wantErr: `--hooks: unknown hook set "kprobes" (want auto, fentry or tracepoints)`},
		{args: []string{"--hooks=tracepoints"}, check: func(t *testing.T, o session.Options) {
			if o.Hooks != probe.HooksTracepoints {
				t.Errorf("--hooks=tracepoints parsed as %q", o.Hooks)
			}
		}},
		{args: []string{"-o", "yaml"}, wantErr: "must be text or json"},
		{args: []string{"-4", "-6"}, wantErr: "exclude each other"},
		{args: []string{"--port", "70000"}, wantErr: "must be 1-65535"},
		{args: []string{"-d", "soon"}, wantErr: "invalid argument"},
		{args: []string{"-i", "0s"}, wantErr: "must be positive"},
		{args: []string{"--ring-size", "3"}, wantErr: "power of two"},
		{args: []string{"--metrics", "localhost"}, wantErr: "the port must be a number"},
		{args: []string{"--metrics", "9877", "-q", "--all-netns"}, check: func(t *testing.T, o session.Options) {
			if o.Metrics != "9877" || !o.AllNetNS || !o.Quiet || o.Duration != 0 {
				t.Errorf("parsed %+v", o)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			o, err := parseFlags(tt.args, &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o)
		})
	}
}

// TestBadFlagShortError: a bad flag or value prints the error and the
// --help hint, exit 2, not the whole usage text that would bury it.
func TestBadFlagShortError(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-d", "abc"}, `invalid argument "abc" for "-d, --duration" flag`},
		{[]string{"--port", "x"}, `invalid argument "x" for "--port" flag`},
		{[]string{"--port", "70000"}, "must be 1-65535"},
		{[]string{"--nope"}, "unknown flag: --nope"},
		{[]string{"-Z"}, "unknown shorthand flag: 'Z'"},
		{[]string{"-d"}, "flag needs an argument"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(tt.args, &out, &errOut); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			lines := strings.Split(strings.TrimSuffix(errOut.String(), "\n"), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "tcptrace: ") || !strings.Contains(lines[0], tt.want) ||
				lines[1] != "Run 'tcptrace --help' for usage." {
				t.Errorf("stderr %q: want the error (with %q) and the --help hint, two lines", errOut.String(), tt.want)
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q, want nothing", out.String())
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "--close-wait-threshold") {
		t.Errorf("--help: exit %d, stdout %q", code, out.String())
	}
	if strings.Contains(out.String(), "ready-file") {
		t.Error("--help shows the hidden --ready-file")
	}
	out.Reset()
	if code := run([]string{"--version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "tcptrace ") {
		t.Errorf("--version: exit %d, stdout %q", code, out.String())
	}
}
