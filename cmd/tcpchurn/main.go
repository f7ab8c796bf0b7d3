// Command tcpchurn is tcptrace's TCP load generator: it makes many short
// TCP connections against a server it runs itself on loopback (or an
// external one), with a chosen side closing first, and prints how many
// connections per second it managed. With --serve it only runs the server.
//
// The logic lives in internal/churn; this file parses flags and prints.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"github.com/tcptrace/tcptrace/internal/churn"
)

// options are the parsed command line.
type options struct {
	cfg    churn.Config
	serve  string
	output string
}

// errUsage marks command-line errors, which exit 2 with the usage text.
type errUsage struct{ err error }

// Error returns the underlying message; cli adds the "tcpchurn: " prefix.
func (e errUsage) Error() string { return e.err.Error() }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one kills us the default way in
	// case shutting down hangs.
	context.AfterFunc(ctx, stop)
	code := cli(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli runs tcpchurn with args and returns the exit status: 0, 1 for errors,
// 2 for bad usage. It is main without the process around it, for tests.
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, fs, err := parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		usage(stdout, fs)
		return 0
	}
	var ue errUsage
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "tcpchurn: %v\n", err)
		usage(stderr, fs)
		return 2
	}
	if err == nil {
		err = run(ctx, opts, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tcpchurn: %v\n", err)
		return 1
	}
	return 0
}

// parse turns args into options. Errors pflag reports (unknown flags,
// malformed values) and stray arguments are errUsage; conflicting or
// invalid settings are plain errors; ErrHelp means -h.
func parse(args []string) (options, *pflag.FlagSet, error) {
	var o options
	var closeMode string
	var help bool
	fs := pflag.NewFlagSet("tcpchurn", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // cli prints errors and usage itself
	fs.Usage = func() {}
	fs.SortFlags = false
	fs.IntVarP(&o.cfg.Connections, "connections", "n", 10000, "connections to make")
	fs.IntVarP(&o.cfg.Concurrency, "concurrency", "c", 4, "clients connecting in parallel")
	fs.StringVar(&closeMode, "close", "server", "who closes first: client, server, or leak (the client closes, the server never does)")
	fs.BoolVarP(&o.cfg.IPv6, "ipv6", "6", false, "run the built-in server on ::1 instead of 127.0.0.1")
	fs.StringVarP(&o.cfg.Target, "target", "t", "", "connect to an external server at `host:port` instead of the built-in one")
	fs.StringVar(&o.serve, "serve", "", "only run the server on `addr` (e.g. 127.0.0.1:8080) until SIGINT/SIGTERM")
	fs.Float64VarP(&o.cfg.Rate, "rate", "r", 0, "cap on new connections per second (0 = unlimited)")
	fs.IntVar(&o.cfg.Payload, "payload", 0, "bytes the server writes before its side of the close")
	fs.BoolVar(&o.cfg.KeepGoing, "keep-going", false, "count failed connect() calls (e.g. EADDRNOTAVAIL) and continue")
	fs.DurationVar(&o.cfg.Hold, "hold", 0, "leak mode: keep leaked sockets open this long after the run (negative = until SIGINT)")
	fs.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	fs.BoolVarP(&help, "help", "h", false, "show this help")

	if err := fs.Parse(args); err != nil {
		return o, fs, errUsage{err}
	}
	if help {
		return o, fs, pflag.ErrHelp
	}
	if fs.NArg() > 0 {
		return o, fs, errUsage{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	var err error
	if o.cfg.Close, err = churn.ParseClose(closeMode); err != nil {
		return o, fs, err
	}
	if o.output != "text" && o.output != "json" {
		return o, fs, fmt.Errorf("output must be text or json, got %q", o.output)
	}
	if fs.Changed("serve") {
		if o.serve == "" {
			return o, fs, errors.New("--serve needs an address such as 127.0.0.1:8080")
		}
		// Refuse flags --serve ignores rather than silently drop them.
		for _, name := range []string{"connections", "concurrency", "ipv6", "target", "rate", "keep-going", "hold", "output"} {
			if fs.Changed(name) {
				return o, fs, fmt.Errorf("--%s does not apply to --serve", name)
			}
		}
	}
	return o, fs, nil
}

// usage prints the help text to w.
func usage(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "Usage: tcpchurn [flags]\n\n"+
		"Makes short TCP connections against a built-in loopback server (or --target)\n"+
		"with the chosen side closing first and prints connections per second.\n\nFlags:\n%s",
		fs.FlagUsages())
}

// run does what the options say and prints the result to stdout.
func run(ctx context.Context, o options, stdout io.Writer) error {
	if o.serve != "" {
		return serve(ctx, o, stdout)
	}
	printed := false
	if o.cfg.Close == churn.CloseLeak {
		// Print before the hold so the numbers show while the sockets
		// are still held (the hold may last until SIGINT).
		o.cfg.OnHold = func(res churn.Result) {
			printed = true
			report(stdout, o, res)
		}
	}
	res, err := churn.Run(ctx, o.cfg)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted after %d connections", res.Connections)
		}
		return err
	}
	if !printed {
		return report(stdout, o, res)
	}
	return nil
}

// serve runs only the server until ctx is cancelled or the server fails.
func serve(ctx context.Context, o options, stdout io.Writer) error {
	srv, err := churn.Listen(ctx, "tcp", o.serve, o.cfg.Close, o.cfg.Payload)
	if err != nil {
		return err
	}
	defer srv.Close()
	// Tests wait for this line before they connect.
	if _, err := fmt.Fprintf(stdout, "listening on %s\n", srv.Addr()); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case <-srv.Done():
		return srv.Err()
	}
}

// jsonResult is the -o json output.
type jsonResult struct {
	Connections   int     `json:"connections"`
	ConnectErrors int     `json:"connect_errors"`
	EADDRNOTAVAIL int     `json:"eaddrnotavail"`
	ConnectCalls  int     `json:"connect_calls"`
	ElapsedS      float64 `json:"elapsed_s"`
	PerSecond     float64 `json:"per_second"`
	Close         string  `json:"close"`
	Concurrency   int     `json:"concurrency"`
	Server        string  `json:"server"`
	Transitions   int     `json:"transitions"`
	PID           int     `json:"pid"`
}

// report prints res in the chosen format.
func report(w io.Writer, o options, res churn.Result) error {
	if o.output == "json" {
		return json.NewEncoder(w).Encode(jsonResult{
			Connections:   res.Connections,
			ConnectErrors: res.ConnectErrors,
			EADDRNOTAVAIL: res.EADDRNOTAVAIL,
			ConnectCalls:  res.ConnectCalls,
			ElapsedS:      res.Elapsed.Seconds(),
			PerSecond:     res.PerSecond,
			Close:         string(o.cfg.Close),
			Concurrency:   o.cfg.Concurrency,
			Server:        res.ServerAddr,
			Transitions:   res.Transitions,
			// The process that made the connections (and, without
			// --target, served them): what a tracer's pid filter wants.
			PID: os.Getpid(),
		})
	}
	transitions := "transitions not predictable"
	if res.Transitions >= 0 {
		transitions = fmt.Sprintf("%d transitions", res.Transitions)
	}
	errs := fmt.Sprintf("%d connect errors", res.ConnectErrors)
	if res.EADDRNOTAVAIL > 0 {
		errs += fmt.Sprintf(" (%d EADDRNOTAVAIL)", res.EADDRNOTAVAIL)
	}
	rate := ""
	if o.cfg.Rate > 0 {
		rate = fmt.Sprintf(", rate=%g/s", o.cfg.Rate)
	}
	_, err := fmt.Fprintf(w, "%d connections in %.2fs: %.0f conn/s (close=%s, concurrency=%d%s, %s); %s; %s\n",
		res.Connections, res.Elapsed.Round(10*time.Millisecond).Seconds(), res.PerSecond,
		o.cfg.Close, o.cfg.Concurrency, rate, res.ServerAddr, transitions, errs)
	return err
}
