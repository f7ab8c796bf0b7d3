package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/metrics"
	"github.com/tcptrace/tcptrace/internal/probe"
	"github.com/tcptrace/tcptrace/internal/session"
)

// errHelp means --help or --version was printed: exit 0.
var errHelp = errors.New("help printed")

const usageHead = `tcptrace traces TCP connection lifetimes with eBPF: how long sockets spend
in TIME_WAIT, FIN_WAIT2 and CLOSE_WAIT, which processes leak CLOSE_WAIT
sockets, and which sysctl settings would help, with the numbers behind it.

Usage:
  sudo tcptrace [flags]                 trace until Ctrl-C (or --duration), then report
  sudo tcptrace [flags] -- COMMAND ...  trace while COMMAND runs; exit with its status
  sudo tcptrace -e [flags]              print every event as it happens
  tcptrace --snapshot [flags]           report at once from the sockets there are now:
                                        no tracing, no BPF; root (or CAP_SYS_PTRACE)
                                        only to name other users' processes, as ss -tp
  tcptrace -r FILE [flags]              replay a capture (recorded with -w FILE): no root needed

It traces the network namespace it runs in: use 'ip netns exec NS tcptrace'
for another one, or --all-netns for every namespace.

Examples:
  sudo tcptrace -d 30s                          report on 30 seconds of traffic
  sudo tcptrace -- wrk -c100 -d30s http://127.0.0.1:8080/
  sudo tcptrace -e --port 8080                  live events for port 8080
  sudo tcptrace -o json -d 10s | tail -1 | jq .recommendations
  sudo tcptrace --metrics 0.0.0.0:9877 -q --all-netns   a node exporter for Prometheus
  sudo tcptrace --snapshot                      who leaks CLOSE_WAIT, since when, and why
  sudo tcptrace -w incident.tcpcap -d 5m        record 5 minutes to share
  tcptrace -r incident.tcpcap --html incident.html --port 443

Flags:
`

// parseFlags parses tcptrace's command line. --help and --version are
// printed to stdout (errHelp); a bad flag is returned as an error for run to
// print with the --help hint.
func parseFlags(args []string, stdout io.Writer) (session.Options, error) {
	var o session.Options
	fs := pflag.NewFlagSet("tcptrace", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are printed once, by run
	fs.SortFlags = false
	fs.SetInterspersed(false) // everything after the first non-flag is COMMAND

	fs.BoolVarP(&o.Events, "events", "e", false, "print every event as it happens instead of a final report")
	fs.BoolVar(&o.Snapshot, "snapshot", false, "report at once from a census of the sockets there are now (ages from tcp_info), without tracing")
	fs.DurationVarP(&o.Duration, "duration", "d", 0, "stop after this long (e.g. 30s, 5m); default: until Ctrl-C or COMMAND exits")
	output := fs.StringP("output", "o", "text", "output format: text or json (JSON Lines for --events; the report as the last line)")
	fs.IntVarP(&o.PID, "pid", "p", 0, "trace only sockets of this process")
	fs.IntVar(&o.Port, "port", 0, "trace only sockets with this local or remote port")
	v4 := fs.BoolP("ipv4", "4", false, "trace only IPv4")
	v6 := fs.BoolP("ipv6", "6", false, "trace only IPv6")
	fs.BoolVar(&o.AllNetNS, "all-netns", false, "trace every network namespace, not just tcptrace's own")
	fs.DurationVarP(&o.Interval, "interval", "i", time.Second, "refresh period of the live view and the status line; census period")
	fs.BoolVarP(&o.Quiet, "quiet", "q", false, "no live view or status line while tracing")
	fs.BoolVar(&o.NoLive, "no-live", false, "no live view: print a status line a second on stderr instead (the view is on when stdout is a terminal)")
	fs.StringVar(&o.Metrics, "metrics", "", "serve Prometheus metrics on this address (\":9877\" is 127.0.0.1:9877; give a host, e.g. 0.0.0.0:9877, to listen wider)")
	fs.DurationVar(&o.CloseWaitThreshold, "close-wait-threshold", 30*time.Second, "report CLOSE_WAIT sockets at least this old as leaked")
	fs.IntVar(&o.MaxSockets, "max-sockets", 1_000_000, "most sockets tracked at once (about 120 bytes each); the oldest are evicted past it")
	addCaptureFlags(fs, &o)
	ringMiB := fs.Int("ring-size", 8, "BPF ring buffer size per CPU in MiB (a power of two; all CPUs together at most 256 MiB)")
	hooks := fs.String("hooks", "auto", "how TIME_WAIT sockets are followed: fentry (function hooks, cheapest), tracepoints\n(timer tracepoints, allowed under kernel lockdown), or auto (fentry where the kernel allows it)")
	fs.StringVar(&o.ReadyFile, "ready-file", "", "create this file once tracing has started")
	_ = fs.MarkHidden("ready-file")
	// For scripts/breakdown.sh, which measures what each part of tcptrace
	// costs; both lose events.
	fs.StringSliceVar(&o.DevSkip, "dev-skip", nil, "do not attach these BPF programs: "+strings.Join(probe.ProgramNames(), ","))
	_ = fs.MarkHidden("dev-skip")
	fs.BoolVar(&o.DevIdle, "dev-idle", false, "attach BPF programs that return at once")
	_ = fs.MarkHidden("dev-idle")
	version := fs.Bool("version", false, "print the version and exit")
	help := fs.BoolP("help", "h", false, "show this help")

	usage := func(w io.Writer) {
		fmt.Fprint(w, usageHead)
		fmt.Fprint(w, fs.FlagUsages())
		fmt.Fprint(w, "\nExit status: 0 done, 1 error, 2 bad usage, or COMMAND's own status.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			usage(stdout)
			return o, errHelp
		}
		// The error alone (run adds the --help hint): the whole usage
		// text would bury the one line that says what was wrong.
		return o, err
	}
	if *help {
		usage(stdout)
		return o, errHelp
	}
	if *version {
		fmt.Fprintf(stdout, "tcptrace %s\n", session.Version)
		return o, errHelp
	}
	o.Command = fs.Args()

	switch strings.ToLower(*output) {
	case "text":
	case "json":
		o.JSON = true
	default:
		return o, fmt.Errorf("--output %q: must be text or json", *output)
	}
	switch {
	case *v4 && *v6:
		return o, errors.New("-4 and -6 exclude each other: give at most one")
	case *v4:
		o.Family = event.IPv4
	case *v6:
		o.Family = event.IPv6
	}
	if o.Duration < 0 {
		return o, fmt.Errorf("--duration %s: must not be negative", o.Duration)
	}
	if o.Interval <= 0 {
		return o, fmt.Errorf("--interval %s: must be positive", o.Interval)
	}
	if o.CloseWaitThreshold < 0 {
		return o, fmt.Errorf("--close-wait-threshold %s: must not be negative", o.CloseWaitThreshold)
	}
	if o.PID < 0 || o.PID > 1<<22 {
		return o, fmt.Errorf("--pid %d: not a process id", o.PID)
	}
	if o.Port < 0 || o.Port > 65535 {
		return o, fmt.Errorf("--port %d: must be 1-65535 (or 0 for any port)", o.Port)
	}
	if o.MaxSockets < 1000 {
		return o, fmt.Errorf("--max-sockets %d: must be at least 1000", o.MaxSockets)
	}
	if o.Snapshot {
		// A snapshot traces nothing: the options about tracing have no
		// meaning there, and silently ignoring one would mislead.
		for _, c := range []struct {
			set  bool
			flag string
		}{
			{o.Events, "--events"}, {fs.Changed("duration"), "--duration"}, {len(o.Command) > 0, "COMMAND"},
			{fs.Changed("pid"), "--pid"}, {fs.Changed("ring-size"), "--ring-size"},
			{fs.Changed("max-sockets"), "--max-sockets"}, {fs.Changed("interval"), "--interval"},
			{fs.Changed("metrics"), "--metrics"},
		} {
			if c.set {
				return o, fmt.Errorf("--snapshot takes one census and traces nothing: %s does not apply", c.flag)
			}
		}
		if o.AllNetNS {
			return o, errors.New("--snapshot covers the network namespace it runs in: use 'ip netns exec NS tcptrace --snapshot' for another")
		}
	}
	if m := *ringMiB; m < 1 || m > 1024 || m&(m-1) != 0 {
		return o, fmt.Errorf("--ring-size %d: must be a power of two between 1 and 1024 (MiB)", m)
	}
	o.RingBytes = *ringMiB << 20
	if o.Metrics != "" {
		if _, err := metrics.ListenAddr(o.Metrics); err != nil {
			return o, err
		}
	}
	h, err := probe.ParseHooks(*hooks)
	if err != nil {
		return o, fmt.Errorf("--hooks: %w", err)
	}
	o.Hooks = h
	return o, checkCaptureFlags(fs, &o)
}
