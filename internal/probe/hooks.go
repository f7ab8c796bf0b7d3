package probe

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// Hooks names the set of programs that follow TIME_WAIT mini-sockets. Both
// write the same records, so what comes out of the probe is the same; they
// differ in cost and in where the kernel lets them attach.
type Hooks string

const (
	// HooksAuto picks HooksFentry where the kernel lets it attach, else
	// HooksTracepoints.
	HooksAuto Hooks = "auto"
	// HooksFentry hooks the kernel functions that make, re-arm and end a
	// mini-socket (fentry.bpf.c): two or three program runs per
	// connection. Needs BPF trampolines and no lockdown that forbids them
	// (stock Debian, Ubuntu and RHEL kernels allow them).
	HooksFentry Hooks = "fentry"
	// HooksTracepoints uses the timer tracepoints (tracepoints.bpf.c), which
	// run for every timer in the kernel (a dozen or more per connection)
	// but attach wherever tp_btf does, kernel lockdown included.
	HooksTracepoints Hooks = "tracepoints"
)

// ParseHooks reads a --hooks value.
func ParseHooks(s string) (Hooks, error) {
	switch h := Hooks(s); h {
	case HooksAuto, HooksFentry, HooksTracepoints:
		return h, nil
	case "":
		return HooksAuto, nil
	}
	return "", fmt.Errorf("unknown hook set %q (want auto, fentry or tracepoints)", s)
}

// hook is one BPF program and where it attaches.
type hook struct {
	name   string // for Config.Skip and messages
	prog   string // the program's name in its object
	target string // the tracepoint or kernel function
	fentry bool
}

// The programs in the order they attach: the mini-socket's first, so a
// TIME_WAIT start is never seen without the transitions around it, and the
// rescue program after on_set_state, as it must run second (see
// sockstate.bpf.c).
var (
	timerHooks = []hook{
		{name: "timer_start", prog: "on_timer_start", target: "timer_start"},
		{name: "timer_cancel", prog: "on_timer_cancel", target: "timer_cancel"},
		{name: "timer_expire", prog: "on_timer_expire", target: "timer_expire_entry"},
	}
	// fentryHooks: tw_schedule where new mini-sockets are armed through
	// __inet_twsk_schedule (before 6.11); tw_hashdance and tw_rearm where
	// inet_twsk_hashdance_schedule arms them (6.11+). fentryHooksFor picks.
	fentryHooks = []hook{
		{name: "tw_schedule", prog: "on_tw_schedule", target: "__inet_twsk_schedule", fentry: true},
		{name: "tw_hashdance", prog: "on_tw_hashdance", target: "inet_twsk_hashdance_schedule", fentry: true},
		{name: "tw_rearm", prog: "on_tw_rearm", target: "__inet_twsk_schedule", fentry: true},
		{name: "tw_timer", prog: "on_tw_timer", target: "tw_timer_handler", fentry: true},
		{name: "tw_kill", prog: "on_tw_kill", target: "inet_twsk_kill", fentry: true},
	}
	stateHooks = []hook{
		{name: "set_state", prog: "on_set_state", target: "inet_sock_set_state"},
		{name: "set_state_rescue", prog: "on_set_state_nested", target: "inet_sock_set_state"},
	}
)

// ProgramNames names tcptrace's BPF programs, for Config.Skip.
func ProgramNames() []string {
	var names []string
	for _, hs := range [][]hook{timerHooks, fentryHooks, stateHooks} {
		for _, h := range hs {
			names = append(names, h.name)
		}
	}
	return names
}

// fentryHooksFor picks the function hooks for this kernel.
func fentryHooksFor(kernel *btf.Spec) ([]hook, error) {
	want := map[string]bool{"tw_timer": true, "tw_kill": true}
	if hasFunc(kernel, "inet_twsk_hashdance_schedule") {
		want["tw_hashdance"], want["tw_rearm"] = true, true
	} else {
		want["tw_schedule"] = true
	}
	var hs []hook
	for _, h := range fentryHooks {
		if !want[h.name] {
			continue
		}
		if !hasFunc(kernel, h.target) {
			return nil, fmt.Errorf("the kernel has no function %s to hook", h.target)
		}
		hs = append(hs, h)
	}
	return hs, nil
}

func hasFunc(kernel *btf.Spec, name string) bool {
	var fn *btf.Func
	return kernel.TypeByName(name, &fn) == nil
}

// attached is a set of programs that attached together.
type attached struct {
	hooks []hook
	progs []*ebpf.Program // same order as hooks
	links []link.Link
}

// attach attaches coll's programs for hs, all or none: on error it closes
// what it attached. Programs named in skip are loaded but not attached.
func attach(coll *ebpf.Collection, hs []hook, skip map[string]bool) (*attached, error) {
	a := &attached{}
	for _, h := range hs {
		prog := coll.Programs[h.prog]
		if prog == nil {
			a.close()
			return nil, fmt.Errorf("BPF object lacks program %s", h.prog)
		}
		a.hooks = append(a.hooks, h)
		a.progs = append(a.progs, prog)
		if skip[h.name] {
			continue
		}
		opts := link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp}
		what := "tracepoint " + h.target
		if h.fentry {
			opts.AttachType = ebpf.AttachTraceFEntry
			what = "fentry/" + h.target
		}
		l, err := link.AttachTracing(opts)
		if err != nil {
			a.close()
			return nil, fmt.Errorf("attaching to %s: %w", what, permHint(err))
		}
		a.links = append(a.links, l)
	}
	return a, nil
}

// close detaches the programs; the collection still owns them.
func (a *attached) close() error {
	var errs []error
	for _, l := range a.links {
		errs = append(errs, l.Close())
	}
	a.links = nil
	return errors.Join(errs...)
}

// misses sums the programs' recursion misses (runs the kernel skipped).
func (a *attached) misses() uint64 {
	var n uint64
	for _, p := range a.progs {
		if st, err := p.Stats(); err == nil {
			n += st.RecursionMisses
		}
	}
	return n
}
