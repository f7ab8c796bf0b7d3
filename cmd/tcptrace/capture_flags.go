package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/tcptrace/tcptrace/internal/session"
)

// addCaptureFlags declares the flags that record, replay and share a
// trace.
func addCaptureFlags(fs *pflag.FlagSet, o *session.Options) {
	fs.StringVarP(&o.Write, "write", "w", "", "also record the trace to this capture file (replay it with -r, anywhere, without root)")
	fs.StringVarP(&o.Read, "read", "r", "", "replay this capture file instead of tracing: same outputs, no root needed; --port, -p, -4/-6 and --close-wait-threshold apply")
	fs.StringVar(&o.HTML, "html", "", "also write the report as one self-contained HTML page to this file")
}

// liveOnly are the flags that mean nothing when replaying a capture.
var liveOnly = []string{"snapshot", "metrics", "duration", "all-netns", "interval", "max-sockets", "ring-size",
	"ready-file", "hooks", "dev-skip", "dev-idle"}

// checkCaptureFlags checks the capture flags against the others.
func checkCaptureFlags(fs *pflag.FlagSet, o *session.Options) error {
	if o.Read == "" {
		return nil
	}
	for _, name := range liveOnly {
		if fs.Changed(name) {
			return fmt.Errorf("--%s applies to tracing, not to --read: the capture holds what its trace had", name)
		}
	}
	if len(o.Command) > 0 {
		return fmt.Errorf("a COMMAND (%s) cannot run with --read: replaying traces nothing", o.Command[0])
	}
	if !fs.Changed("close-wait-threshold") {
		o.CloseWaitThreshold = 0 // the capture's own
	}
	return nil
}
