// Package probe loads tcptrace's BPF programs, attaches them, and reads
// their records as domain events. It is the only package that imports
// cilium/ebpf.
package probe

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/event"
)

// Config selects what the kernel side reports. Zero values mean "no
// filter". The filters run in the kernel, so filtered-out sockets cost
// almost nothing.
type Config struct {
	// NetNS is the inode of the network namespace to trace; 0 traces all.
	NetNS uint32
	// PID traces only sockets of this process (tgid); 0 traces all.
	PID uint32
	// Port traces only sockets whose local or remote port is Port.
	Port uint16
	// Family traces only IPv4 or only IPv6 sockets.
	Family event.Family
	// RingBytes is the size of each CPU's ring buffer: a power of two, at
	// least one page. Default 8 MiB. All rings together take at most
	// maxRingMemory: on hosts with many CPUs each ring gets less.
	RingBytes int
	// Poll bounds how long a record may wait in the ring buffer before the
	// reader sees it. The kernel side wakes the reader only when a batch is
	// waiting (a quarter of a ring), so this is the latency on a quiet
	// host. Default 100 ms.
	Poll time.Duration

	// Hooks picks how TIME_WAIT mini-sockets are followed; default
	// HooksAuto.
	Hooks Hooks
	// ProbeReads loads the programs built for kernels without the
	// bpf_rdonly_cast kfunc (before 6.2) even where it exists, so that
	// tests cover both builds on any kernel.
	ProbeReads bool

	// Measuring tcptrace's own cost (scripts/breakdown.sh), never for
	// tracing: Skip names programs not to attach (see ProgramNames), and Idle
	// makes every attached program return at once. Both lose events.
	Skip []string
	Idle bool
}

// ErrClosed is returned by Poll once the probe is closed and drained.
var ErrClosed = errors.New("probe closed")

// ErrIdle is returned by Poll when no record arrived for a poll period. The
// caller gets control back for periodic work, then calls Read again.
var ErrIdle = errors.New("no records for a poll period")

// Probe is a loaded and attached set of tcptrace programs.
type Probe struct {
	cfg  Config
	sock sockstateObjects
	// mini is the collection of the mini-socket programs (tracepoints or
	// fentry), minis what of it is attached, states the set_state pair.
	mini      *ebpf.Collection
	minis     *attached
	states    *attached
	hooks     Hooks
	probeRead bool
	inner     []*ebpf.Map // the per-CPU ring buffers, in CPU order
	// possible and ringSize size the ring array and its rings.
	possible, ringSize int
	rings              *rings
	hz                 int
	stop               sync.Once
	stopErr            error
	stopped            atomic.Bool
	closed             bool
	boost              sync.Once
	// The record callback, made once so that Poll allocates nothing.
	onRecord func([]byte)
	fn       func(*event.Event)
	ev       event.Event
	read     uint64
}

// DefaultRingBytes is the default size of each CPU's ring buffer.
//
// A CPU's ring must absorb what that CPU writes while the reader cannot
// run. On a host saturated by the very load being traced, the reader was
// measured starved for 200-330 ms at a time (nginx + wrk on 2 CPUs with
// other work beside), while one CPU wrote ~20 MB/s of records: 8 MiB
// holds about 400 ms of that.
const DefaultRingBytes = 8 << 20

// maxRingMemory bounds the memory of all rings together.
const maxRingMemory = 256 << 20

// minRingBytes is the least a ring gets, however many CPUs there are.
const minRingBytes = 1 << 20

// ringBytes is the size of each CPU's ring: perCPU, unless the rings of
// all cpus would take more than maxRingMemory; then an even share of it,
// rounded down to a power of two (at least minRingBytes, or perCPU if
// that is less).
func ringBytes(perCPU, cpus int) int {
	share := maxRingMemory / max(cpus, 1)
	size := 1
	for size*2 <= share {
		size *= 2
	}
	return min(perCPU, max(size, minRingBytes))
}

// Open checks the kernel, loads and attaches the programs. The caller must
// Close the probe.
func Open(cfg Config) (_ *Probe, err error) {
	if cfg.RingBytes == 0 {
		cfg.RingBytes = DefaultRingBytes
	}
	if cfg.RingBytes < os.Getpagesize() || cfg.RingBytes&(cfg.RingBytes-1) != 0 {
		return nil, fmt.Errorf("ring buffer size %d: must be a power of two of at least %d bytes", cfg.RingBytes, os.Getpagesize())
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Hooks == "" {
		cfg.Hooks = HooksAuto
	}
	if _, err := ParseHooks(string(cfg.Hooks)); err != nil {
		return nil, err
	}
	skip := map[string]bool{}
	for _, name := range cfg.Skip {
		if !slices.Contains(ProgramNames(), name) {
			return nil, fmt.Errorf("no BPF program %q to skip (have %s)", name, strings.Join(ProgramNames(), ", "))
		}
		skip[name] = true
	}
	kernel, err := checkSystem()
	if err != nil {
		return nil, err
	}

	cpus, err := onlineCPUs()
	if err != nil {
		return nil, err
	}
	possible, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("counting the possible CPUs: %w", err)
	}
	ringSize := ringBytes(cfg.RingBytes, len(cpus))

	p := &Probe{cfg: cfg, hz: kernelHZ(), possible: possible, ringSize: ringSize}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	// bpf_rdonly_cast (6.2+) makes reads of fields beyond what a program
	// is handed plain loads; before it, the same programs built with
	// probe reads load instead.
	p.probeRead = cfg.ProbeReads || !hasFunc(kernel, "bpf_rdonly_cast")

	kcfg := sockstateTtConfig{
		Netns:       cfg.NetNS,
		Tgid:        cfg.PID,
		WakeupBytes: uint32(ringSize / 4),
		Port:        cfg.Port,
		Family:      uint16(cfg.Family),
	}
	if cfg.Idle {
		kcfg.Idle = 1
	}

	load := loadSockstate
	if p.probeRead {
		load = loadSockstateProbeRead
	}
	sockSpec, err := load()
	if err != nil {
		return nil, fmt.Errorf("reading embedded BPF object: %w", err)
	}
	sizeRings(sockSpec.Maps[sockstateMapRings], possible, ringSize)
	if err := sockSpec.Variables[sockstateVarCfg].Set(kcfg); err != nil {
		return nil, fmt.Errorf("configuring sockstate: %w", err)
	}
	if err := sockSpec.LoadAndAssign(&p.sock, nil); err != nil {
		return nil, loadError("sockstate", err)
	}

	if cfg.PID != 0 {
		if _, err := markTargetSockets(p.sock.TargetSocks, p.sock.TargetPorts, int(cfg.PID)); err != nil {
			return nil, err
		}
	}

	// One ring buffer per CPU that is online now. A CPU brought online
	// later finds no ring: the programs count its records as dropped.
	inner := sockSpec.Maps[sockstateMapRings].InnerMap
	for _, cpu := range cpus {
		m, err := ebpf.NewMap(inner)
		if err != nil {
			return nil, fmt.Errorf("creating the ring buffer of CPU %d: %w", cpu, permHint(err))
		}
		p.inner = append(p.inner, m)
		if err := p.sock.Rings.Put(uint32(cpu), m); err != nil {
			return nil, fmt.Errorf("installing the ring buffer of CPU %d: %w", cpu, err)
		}
	}
	// The reader exists before the programs attach, so no record is missed.
	if p.rings, err = newRings(p.inner); err != nil {
		return nil, err
	}
	p.onRecord = func(b []byte) {
		// A record that does not decode is not counted as read, so it
		// shows up in Loss as written but not read.
		if err := Decode(b, &p.ev); err != nil {
			return
		}
		p.read++
		p.fn(&p.ev)
	}

	if err := p.attachMiniSockets(kernel, kcfg, skip); err != nil {
		return nil, err
	}
	sockColl := &ebpf.Collection{Programs: map[string]*ebpf.Program{
		"on_set_state": p.sock.OnSetState, "on_set_state_nested": p.sock.OnSetStateNested,
	}}
	if p.states, err = attach(sockColl, stateHooks, skip); err != nil {
		return nil, err
	}
	return p, nil
}

// attachMiniSockets loads and attaches the programs that follow TIME_WAIT
// mini-sockets: the function hooks where the kernel allows them (or where
// asked to), else the timer tracepoints.
func (p *Probe) attachMiniSockets(kernel *btf.Spec, kcfg sockstateTtConfig, skip map[string]bool) error {
	if p.cfg.Hooks != HooksTracepoints {
		err := p.openMini(kcfg, skip, func() (*ebpf.CollectionSpec, []hook, error) {
			hs, err := fentryHooksFor(kernel)
			if err != nil {
				return nil, nil, err
			}
			spec, err := loadFentry()
			return spec, hs, err
		})
		if err == nil {
			p.hooks = HooksFentry
			return nil
		}
		if p.cfg.Hooks == HooksFentry {
			return fmt.Errorf("--hooks=fentry: %w; --hooks=tracepoints works wherever tcptrace does", fentryError(err))
		}
	}
	// The timer programs recognize the mini-socket's timer by its
	// function's address.
	handler, err := kernelSymbol("/proc/kallsyms", "tw_timer_handler")
	if err != nil {
		return err
	}
	kcfg.TwHandler = handler
	err = p.openMini(kcfg, skip, func() (*ebpf.CollectionSpec, []hook, error) {
		load := loadTracepoints
		if p.probeRead {
			load = loadTracepointsProbeRead
		}
		spec, err := load()
		return spec, timerHooks, err
	})
	if err != nil {
		return err
	}
	p.hooks = HooksTracepoints
	return nil
}

// openMini loads one mini-socket object, sharing sockstate's maps, and
// attaches its hooks. On error nothing of it is left.
func (p *Probe) openMini(kcfg sockstateTtConfig, skip map[string]bool, spec func() (*ebpf.CollectionSpec, []hook, error)) error {
	s, hs, err := spec()
	if err != nil {
		return err
	}
	sizeRings(s.Maps["rings"], p.possible, p.ringSize)
	if err := s.Variables["cfg"].Set(kcfg); err != nil {
		return fmt.Errorf("configuring the mini-socket programs: %w", err)
	}
	// Only the programs that attach here are loaded.
	keep := map[string]bool{}
	for _, h := range hs {
		keep[h.prog] = true
	}
	for name := range s.Programs {
		if !keep[name] {
			delete(s.Programs, name)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(s, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{
			"rings":         p.sock.Rings,
			"counters":      p.sock.Counters,
			"target_tuples": p.sock.TargetTuples,
		},
	})
	if err != nil {
		return loadError("mini-socket", err)
	}
	a, err := attach(coll, hs, skip)
	if err != nil {
		coll.Close()
		return err
	}
	p.mini, p.minis = coll, a
	return nil
}

// fentryError says why the function hooks did not load or attach.
func fentryError(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		why := "operation not permitted"
		if l := lockdown(); l != "" && l != "none" {
			why += "; kernel lockdown is " + l
		}
		return fmt.Errorf("this kernel refuses fentry programs (%s)", why)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("this kernel cannot attach fentry programs (no BPF trampolines): %w", err)
	}
	return err
}

// lockdown is the kernel's lockdown mode, "" if unknown (securityfs not
// mounted).
func lockdown() string {
	b, err := os.ReadFile("/sys/kernel/security/lockdown")
	if err != nil {
		return ""
	}
	s := string(b)
	if i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']'); i >= 0 && j > i {
		return s[i+1 : j]
	}
	return ""
}

// sizeRings sets the size of the ring buffer array (one slot per possible
// CPU, as bpf_get_smp_processor_id() counts them) and of each ring.
func sizeRings(spec *ebpf.MapSpec, possible, ringSize int) {
	spec.MaxEntries = uint32(possible)
	spec.InnerMap = spec.InnerMap.Copy()
	spec.InnerMap.MaxEntries = uint32(ringSize)
}

// HZ is the kernel's timer frequency (CONFIG_HZ), used to turn jiffies into
// time; 0 when the kernel config could not be read.
func (p *Probe) HZ() int { return p.hz }

// Poll waits for records (at most the poll period, unless the kernel
// wakes it for a full batch) and hands every record it may to fn, in
// timestamp order (see rings), decoded into an Event that is reused: fn
// must not keep the pointer. The first call pins the calling goroutine to
// its thread and raises the thread's priority (see readerNice), so call
// it from one goroutine. It returns the number of records; ErrIdle if
// there were none and none is waiting (held back, or being written), so
// the caller may settle what waits for a follow-up record; and ErrClosed
// once Stop was called and everything written before it has been handed
// over.
func (p *Probe) Poll(fn func(*event.Event)) (int, error) {
	p.fn = fn
	p.boost.Do(boostReader)
	if p.stopped.Load() {
		return p.drainAll()
	}
	stop, err := p.rings.wait(p.cfg.Poll)
	if err != nil {
		return 0, err
	}
	if stop {
		return p.drainAll()
	}
	n, waiting, busy := p.rings.pass(p.onRecord, false)
	// A record being written is committed within microseconds, and until
	// then it holds back every newer record of the other rings: look again
	// shortly rather than a poll period later.
	for try := 0; busy && try < 10; try++ {
		time.Sleep(20 * time.Microsecond)
		var m int
		m, waiting, busy = p.rings.pass(p.onRecord, false)
		n += m
	}
	if n == 0 && !waiting {
		return 0, ErrIdle
	}
	return n, nil
}

// Through returns a time (CLOCK_MONOTONIC ns) up to which the stream is
// complete: every record stamped before it has been handed to Poll's fn.
// Records are held back briefly to merge the CPUs' rings in order, so
// something measured at a time (a census) matches the stream only once
// Through has passed that time.
func (p *Probe) Through() uint64 { return p.rings.through }

// readerNice is the scheduling priority of the thread that reads the
// rings. tcptrace runs on hosts saturated by the load it traces: at the
// default priority the reader was measured starved for 200-500 ms at a
// time (nginx + wrk on 2 CPUs beside other work, load average 13), longer
// than a CPU's ring lasts at full rate, and records were dropped; at nice
// -10, none in the same runs. The reader needs only a few percent of a
// CPU and sleeps when the rings are empty, so it cannot starve the load.
const readerNice = -10

// boostReader pins the calling goroutine (the one that polls) to its
// thread and raises that thread's priority. Best effort: without
// CAP_SYS_NICE it stays as it is.
func boostReader() {
	runtime.LockOSThread()
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), readerNice)
}

// drainAll reads what is left after Stop. A record reserved before the
// programs were detached may still be being written, and it holds back
// everything newer: wait for it (at most a second), then hand over the
// rest.
func (p *Probe) drainAll() (int, error) {
	total := 0
	deadline := time.Now().Add(time.Second)
	for {
		n, _, busy := p.rings.pass(p.onRecord, false)
		total += n
		if !busy || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	n, _, _ := p.rings.pass(p.onRecord, true)
	return total + n, ErrClosed
}

// Stop detaches the programs, so no new records arrive, and makes Poll
// hand over what is still in the ring buffer, then return ErrClosed. It
// may be called from another goroutine than Poll.
func (p *Probe) Stop() error {
	p.stop.Do(func() {
		var errs []error
		for _, a := range []*attached{p.minis, p.states} {
			if a != nil {
				errs = append(errs, a.close())
			}
		}
		p.stopped.Store(true)
		if p.rings != nil {
			errs = append(errs, p.rings.stop())
		}
		p.stopErr = errors.Join(errs...)
	})
	return p.stopErr
}

// counters sums the kernel side's per-CPU record counters, and returns
// the drops of each CPU (nil when there were none).
func (p *Probe) counters() (dropped, written uint64, byCPU []uint64, err error) {
	var perCPU []sockstateTtCounters
	if err := p.sock.Counters.Lookup(uint32(0), &perCPU); err != nil {
		return 0, 0, nil, fmt.Errorf("reading record counters: %w", err)
	}
	for _, c := range perCPU {
		dropped += c.Dropped
		written += c.Written
	}
	if dropped > 0 {
		byCPU = make([]uint64, len(perCPU))
		for cpu, c := range perCPU {
			byCPU[cpu] = c.Dropped
		}
	}
	return dropped, written, byCPU, nil
}

// Loss counts what the kernel never recorded.
type Loss struct {
	// RingFull: records not written because a ring buffer was full.
	RingFull uint64
	// RingFullByCPU splits RingFull by CPU, each CPU having its own ring
	// buffer (nil when RingFull is 0). A CPU brought online after Open has
	// no ring: all its records count here.
	RingFullByCPU []uint64
	// Transitions: state changes the kernel skipped because the program
	// was already running on that CPU and the fallback program was too.
	Transitions uint64
	// Rescued: state changes the fallback program recorded (not lost).
	Rescued uint64
	// TimerMisses: runs of the mini-socket programs skipped the same way.
	// With the timer tracepoints most are other timers' (an upper bound
	// on lost mini-socket records); with the function hooks each one is a
	// lost record.
	TimerMisses uint64
	// Written is how many records the kernel wrote; Read how many Poll
	// handed over. Once the probe is stopped and drained they are equal.
	Written, Read uint64
}

// Total is every record known lost (TimerMisses excluded: most are other
// timers).
func (l Loss) Total() uint64 { return l.RingFull + l.Transitions }

// Loss reads the drop counters and the programs' recursion misses.
func (p *Probe) Loss() (Loss, error) {
	var l Loss
	var err error
	if l.RingFull, l.Written, l.RingFullByCPU, err = p.counters(); err != nil {
		return l, err
	}
	l.Read = p.read
	var states []sockstateTtCpuState
	if err := p.sock.CpuState.Lookup(uint32(0), &states); err != nil {
		return l, fmt.Errorf("reading rescue counters: %w", err)
	}
	for _, s := range states {
		l.Rescued += s.Rescued
	}
	if st, err := p.sock.OnSetState.Stats(); err == nil && st.RecursionMisses > l.Rescued {
		l.Transitions = st.RecursionMisses - l.Rescued
	}
	if p.minis != nil {
		l.TimerMisses = p.minis.misses()
	}
	return l, nil
}

// Close detaches and frees everything. It is safe to call more than once.
func (p *Probe) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	errs := []error{p.Stop()}
	if p.rings != nil {
		errs = append(errs, p.rings.close())
	}
	for _, m := range p.inner {
		errs = append(errs, m.Close())
	}
	if p.mini != nil {
		p.mini.Close()
	}
	errs = append(errs, p.sock.Close())
	return errors.Join(errs...)
}

// The oldest kernel tcptrace runs on: 5.11, where tracing programs got
// socket storage (the pid filter's marks), the newest feature its programs
// need. The rest is older: BTF-typed tracepoints (5.5), the BPF ring
// buffer (5.8). Newer kernels only make it cheaper: bpf_rdonly_cast (6.2)
// and fentry where lockdown allows it.
const floor = "Linux 5.11"

// checkSystem turns the usual reasons a load fails into advice, and returns
// the kernel's BTF.
func checkSystem() (*btf.Spec, error) {
	if os.Geteuid() != 0 {
		var caps unix.CapUserHeader
		var data [2]unix.CapUserData
		caps.Version = unix.LINUX_CAPABILITY_VERSION_3
		if err := unix.Capget(&caps, &data[0]); err == nil {
			have := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
			if !(have(unix.CAP_SYS_ADMIN) || (have(unix.CAP_BPF) && have(unix.CAP_PERFMON))) {
				return nil, errors.New("not enough privileges to load BPF programs: run as root (sudo tcptrace) or grant CAP_BPF and CAP_PERFMON")
			}
		}
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, errors.New("this kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing): tcptrace needs " + floor + " or newer built with CONFIG_DEBUG_INFO_BTF=y, as the kernels of Debian 11+, Ubuntu 20.10+, RHEL 8.2+ and Amazon Linux 2023 are")
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("reading the kernel's BTF: %w", err)
	}
	if err := kernelFeatures(kernel); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising the locked-memory limit for BPF maps: %w", permHint(err))
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return nil, errors.New("this kernel has no BPF ring buffer (Linux 5.8): tcptrace needs " + floor + " or newer")
		}
		return nil, fmt.Errorf("probing for BPF ring buffer support: %w", permHint(err))
	}
	// No probe for tp_btf itself: the feature test loads an fentry
	// program, which kernel lockdown forbids even where tp_btf works.
	return kernel, nil
}

// kernelFeatures checks, in the kernel's BTF, for what tcptrace's programs
// need, and says what is missing.
func kernelFeatures(kernel *btf.Spec) error {
	var tp *btf.Typedef
	if kernel.TypeByName("btf_trace_inet_sock_set_state", &tp) != nil {
		return errors.New("this kernel lacks a BTF-typed sock:inet_sock_set_state tracepoint (Linux 5.5): tcptrace needs " + floor + " or newer")
	}
	// The helper's implementation for tracing programs, added with it.
	if !hasFunc(kernel, "bpf_sk_storage_get_tracing") {
		return errors.New("this kernel lacks socket storage for BPF tracing programs (Linux 5.11): tcptrace needs " + floor + " or newer")
	}
	return nil
}

// loadError keeps the verifier's whole log: it is the only way to know why
// a program was rejected.
func loadError(obj string, err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("the kernel's verifier rejected the %s programs: %+v", obj, ve)
	}
	return fmt.Errorf("loading the %s programs: %w", obj, permHint(err))
}

// permHint adds what to do to a permission error.
func permHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (run as root, or grant CAP_BPF and CAP_PERFMON; kernel lockdown can also forbid this)", err)
	}
	return err
}

// Hooks names the hook set that follows TIME_WAIT mini-sockets:
// "fentry" (HooksFentry) or "tracepoints" (HooksTracepoints).
func (p *Probe) Hooks() string { return string(p.hooks) }

// ProbeReads says whether the programs built for kernels without
// bpf_rdonly_cast were loaded.
func (p *Probe) ProbeReads() bool { return p.probeRead }
