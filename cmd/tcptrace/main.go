// Command tcptrace traces TCP connection lifetimes (TIME_WAIT, CLOSE_WAIT,
// FIN_WAIT2) with eBPF, names the processes that leak CLOSE_WAIT sockets,
// and recommends sysctl settings from what it measured.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tcptrace/tcptrace/internal/session"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stdout)
	opts.Args = args
	switch {
	case errors.Is(err, errHelp):
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "tcptrace: %v\nRun 'tcptrace --help' for usage.\n", err)
		return 2
	}

	// The first SIGINT/SIGTERM stops tracing: detach, drain, report. A
	// second one exits at once. The live view's q and Ctrl-C count as
	// SIGINTs, and an exit at once gives the terminal back first.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	teardown := &session.Teardown{}
	opts.Interrupt, opts.Teardown = sigs, teardown
	go func() {
		<-sigs
		cancel()
		<-sigs
		teardown.Run()
		fmt.Fprintln(stderr, "tcptrace: interrupted twice, exiting without a report")
		os.Exit(130)
	}()

	err = session.Run(ctx, opts, stdout, stderr)
	var exit *session.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.Code
	case err != nil:
		fmt.Fprintf(stderr, "tcptrace: %v\n", err)
		return 1
	}
	return 0
}
