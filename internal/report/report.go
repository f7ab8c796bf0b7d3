// Package report is tcptrace's final report: what happened to the traced
// connections, who leaks, and what to change. Its JSON form is a contract
// (README, "JSON report"); field names change only with a new major
// version. Build assembles it from the tracker's statistics and the
// host facts; the advisor fills Recommendations; the render package prints
// it.
package report

import "time"

// Report is the final report. The JSON object is the last line of
// `tcptrace -o json`.
type Report struct {
	Type string `json:"type"` // always "report"
	// Mode is "trace" (events traced, live or replayed from a capture,
	// then a census) or "snapshot" (`tcptrace --snapshot`: one census, no
	// BPF; the event counts, transitions, lifetimes and netstat deltas are
	// then empty, and populations are what the census saw).
	Mode    string `json:"mode"`
	Version string `json:"version"`
	Kernel  string `json:"kernel"`
	// Hooks names the kernel hooks that followed the TIME_WAIT
	// mini-sockets: "tracepoints" (the timer tracepoints) or "fentry".
	Hooks   string    `json:"hooks,omitempty"`
	Started time.Time `json:"started"`
	// DurationS is how long tcptrace traced (0 for a snapshot).
	DurationS float64 `json:"duration_s"`
	// Scope says what was traced: one network namespace (its inode) or
	// all, and any filters.
	Scope Scope `json:"scope"`
	// Events counts records read from the kernel; Dropped those the kernel
	// could not deliver (Loss says why).
	Events  uint64 `json:"events"`
	Dropped uint64 `json:"dropped"`
	Loss    Loss   `json:"loss"`
	// Complete is false when records were dropped or sockets evicted:
	// some numbers below then undercount, and lifetimes that spanned a
	// loss are left out.
	Complete bool     `json:"complete"`
	Tracking Tracking `json:"tracking"`
	// Transitions counts full-socket state changes, keyed "OLD->NEW".
	Transitions map[string]uint64 `json:"transitions"`
	// States is the time spent in each state: full-socket states by their
	// kernel names, "TIME_WAIT" and "FIN_WAIT2_ORPHAN" for the two kinds
	// of mini-socket.
	States          map[string]Durations `json:"states"`
	TimeWait        TimeWait             `json:"time_wait"`
	FinWait2Orphans Orphans              `json:"fin_wait2_orphans"`
	CloseWait       CloseWait            `json:"close_wait"`
	PortExhaustion  PortExhaustion       `json:"port_exhaustion"`
	// Sysctl holds the settings read in the traced network namespace.
	Sysctl map[string]string `json:"sysctl"`
	// Netstat holds how much each /proc/net/netstat TcpExt counter grew
	// while tracing. The ones about mini-sockets, as the kernel counts
	// them (not as their names suggest):
	//   - TW: mini-sockets created whose timer was first armed for more
	//     than 4 s: TIME_WAIT and FIN_WAIT2 orphans alike. Counted at
	//     creation (__inet_twsk_schedule), not at expiry; re-arms are not
	//     counted.
	//   - TWKilled: mini-sockets created with a timer of 4 s or less (in
	//     practice orphans with tcp_fin_timeout <= 4), also counted at
	//     creation: not the ones killed early.
	//   - TWRecycled: connect() took over a TIME_WAIT 4-tuple
	//     (__inet_check_established): through tcp_tw_reuse, or from a port
	//     bound explicitly, which happens even with tcp_tw_reuse = 0.
	//   - TCPTimeWaitOverflow: closes that got no mini-socket (no
	//     TIME_WAIT, no orphan) because tcp_max_tw_buckets was full, or
	//     memory ran out.
	Netstat map[string]uint64 `json:"netstat"`
	// Census is what the final sock_diag census saw.
	Census Census `json:"census"`
	// BlindSpots says what this run could not see, and what would show it.
	BlindSpots []BlindSpot `json:"blind_spots"`
	// Recommendations is the advice. With namespaces (--all-netns), it
	// is each namespace's advice, judged against that namespace's own
	// sysctls, with Advice.NetNS saying which.
	Recommendations []Advice `json:"recommendations"`
	// Command is the result of the command run with `tcptrace -- CMD`.
	Command *Command `json:"command,omitempty"`
	// Namespaces splits the report by network namespace when every
	// namespace was traced (--all-netns); absent otherwise.
	Namespaces []Namespace `json:"namespaces,omitempty"`
}

// Namespace is one network namespace's part of a report on every
// namespace: whose it is, its own settings, what happened in it, and the
// advice for it. Transitions and time spent per state are kept for the
// whole host only: here they are absent, and the lifetimes are empty.
type Namespace struct {
	NetNS uint32 `json:"netns"`
	// Own marks the namespace tcptrace runs in.
	Own bool `json:"own,omitempty"`
	NetNSIdentity
	// Gone: no process is left in it (its last sockets may linger).
	Gone bool `json:"gone,omitempty"`
	// Sockets is the traced full-socket population per state now.
	Sockets         map[string]int64 `json:"sockets"`
	TimeWait        TimeWait         `json:"time_wait"`
	FinWait2Orphans Orphans          `json:"fin_wait2_orphans"`
	CloseWait       CloseWait        `json:"close_wait"`
	PortExhaustion  PortExhaustion   `json:"port_exhaustion"`
	// Sysctl and Netstat are this namespace's own (counter deltas since
	// it was found).
	Sysctl          map[string]string `json:"sysctl"`
	Netstat         map[string]uint64 `json:"netstat"`
	Recommendations []Advice          `json:"recommendations"`
	// CensusError says why its socket census failed, if it did.
	CensusError string `json:"census_error,omitempty"`
}

// NetNSIdentity says whose a network namespace is: a container's, a
// Kubernetes pod's (its containers share one), a named one (ip netns), or
// the host's. It comes from the cgroup of the lowest-numbered process in it.
type NetNSIdentity struct {
	// Name is its ip-netns name (/run/netns/NAME), if any.
	Name string `json:"name,omitempty"`
	// ContainerID is the container's ID (64 hex digits for docker,
	// containerd and cri-o); PodUID the Kubernetes pod's UID.
	ContainerID string `json:"container_id,omitempty"`
	PodUID      string `json:"pod_uid,omitempty"`
	// Runtime is what the cgroup path says runs it: "docker",
	// "containerd", "cri-o", "podman", "kubepods" (a pod whose runtime
	// the path does not say), or "" for none.
	Runtime string `json:"runtime,omitempty"`
	// PID and Comm name the lowest-numbered process in it.
	PID  int    `json:"pid,omitempty"`
	Comm string `json:"comm,omitempty"`
}

// Census is the final socket census (netlink sock_diag, as ss(8) reads
// it).
type Census struct {
	// TakenAt is when it was taken; DurationS how long it took, owners
	// resolved included.
	TakenAt   time.Time `json:"taken_at"`
	DurationS float64   `json:"duration_s"`
	// States counts sockets per state: full sockets by their kernel
	// names, "TIME_WAIT" and "FIN_WAIT2_ORPHAN" for the mini-sockets.
	// Empty when the census covered only some states (a trace takes
	// only CLOSE_WAIT and FIN_WAIT2 at the end).
	States map[string]int `json:"states"`
	// Total is the number of sockets the census returned.
	Total int `json:"total"`
}

// BlindSpot is something the run could not see.
type BlindSpot struct {
	// ID names the kind: "owners-unreadable" (processes whose file
	// descriptors could not be read), "close-wait-owner-unknown",
	// "needs-trace" (what only tracing measures), "census-failed".
	ID string `json:"id"`
	// Count is how many sockets or processes it concerns, when that is
	// a number.
	Count int `json:"count,omitempty"`
	// Reason says what is missing and what to do about it.
	Reason string `json:"reason"`
}

// Scope says what was traced.
type Scope struct {
	// NetNS is the traced network namespace's inode; 0 with AllNetNS.
	NetNS    uint32 `json:"netns"`
	AllNetNS bool   `json:"all_netns"`
	PID      int    `json:"pid,omitempty"`
	Port     int    `json:"port,omitempty"`
	Family   string `json:"family,omitempty"`
	// ReplayFilters names the filters among PID, Port and Family that were
	// applied when a capture was replayed (tcptrace -r), not while it was
	// traced: "pid", "port", "family".
	ReplayFilters []string `json:"replay_filters,omitempty"`
}

// Loss says why records were lost.
type Loss struct {
	// RingFull: the ring buffer was full (the reader fell behind).
	RingFull uint64 `json:"ring_full"`
	// RingFullByCPU splits RingFull by CPU (index), each CPU having its own
	// ring buffer; absent when nothing was dropped.
	RingFullByCPU []uint64 `json:"ring_full_by_cpu,omitempty"`
	// Recursion: the kernel skipped a transition because tcptrace's program
	// was already running on that CPU (an interrupt arrived while it ran)
	// and the fallback program was busy too.
	Recursion uint64 `json:"recursion"`
	// Rescued: transitions the fallback program recorded in such cases.
	Rescued uint64 `json:"rescued"`
	// TimerMisses: timer tracepoint hits skipped the same way; most are
	// other timers, so this only bounds lost TIME_WAIT records.
	TimerMisses uint64 `json:"timer_misses"`
	// Written is how many records the kernel side wrote, Read how many
	// tcptrace read: equal unless records went missing on the way.
	Written uint64 `json:"written"`
	Read    uint64 `json:"read"`
	// Unseen counts sockets whose transitions never reached tcptrace
	// although no record was dropped: a later transition showed a state
	// it was not seen entering. Rare (about one socket in several
	// thousand under heavy churn on Linux 6.18); their lifetimes are left
	// out.
	Unseen uint64 `json:"unseen"`
}

// Tracking says how much the tracker held and what it had to leave out.
type Tracking struct {
	// Sockets is the number of full sockets tracked at the end; Evicted
	// those dropped from tracking to stay under --max-sockets.
	Sockets uint64 `json:"sockets"`
	Evicted uint64 `json:"evicted"`
	// Incomplete counts durations left out of States because records were
	// lost while they ran.
	Incomplete uint64 `json:"incomplete"`
	// Inconsistent counts transitions whose old state was not the tracked
	// one, a sign of a lost record.
	Inconsistent uint64 `json:"inconsistent"`
}

// Durations summarizes time spent in one state, in milliseconds.
type Durations struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// Ended counts how mini-sockets ended.
type Ended struct {
	// Expired: the timer ran out. Killed: removed early (reused by
	// connect() under tcp_tw_reuse, an incoming SYN or RST, or the network
	// namespace went away).
	Expired uint64 `json:"expired"`
	Killed  uint64 `json:"killed"`
	// BecameTimeWait (orphans only): the peer's FIN arrived after all.
	BecameTimeWait uint64 `json:"became_time_wait,omitempty"`
	// Preexisting: ends of mini-sockets created before tracing began.
	Preexisting uint64 `json:"preexisting"`
}

// ByRole counts by which side closed first.
type ByRole struct {
	Client uint64 `json:"client"`
	Server uint64 `json:"server"`
}

// TimeWait describes TIME_WAIT mini-sockets.
type TimeWait struct {
	// Current is the population at the end: those seen starting and not
	// ending, plus those found at start (Preexisting) not yet seen ending.
	Current int64 `json:"current"`
	// Peak is the highest population seen, PeakAtS seconds into tracing.
	Peak    int64   `json:"peak"`
	PeakAtS float64 `json:"peak_at_s"`
	// Created counts mini-sockets that entered TIME_WAIT while tracing,
	// FromOrphans of them FIN_WAIT2 orphans that got their FIN.
	Created     uint64 `json:"created"`
	FromOrphans uint64 `json:"from_orphans"`
	// PeakPerS is the most created within one second.
	PeakPerS uint64 `json:"peak_per_s"`
	// Preexisting is how many existed when tracing began (census).
	Preexisting int   `json:"preexisting"`
	Ended       Ended `json:"ended"`
	// ByRole counts those created while tracing by role; in a snapshot,
	// those present.
	ByRole ByRole `json:"by_role"`
	// Top lists the destinations with the most TIME_WAIT created (in a
	// snapshot: present).
	Top []Destination `json:"top"`
	// Lifetime is how long they lasted (complete lives only).
	Lifetime Durations `json:"lifetime"`
}

// Destination is where TIME_WAIT mini-sockets pile up: for the client role
// the remote address and port this host connects to, for the server role
// its own listening address and port.
type Destination struct {
	Role  string `json:"role"`
	Addr  string `json:"addr"`
	Port  int    `json:"port"`
	NetNS uint32 `json:"netns,omitempty"`
	// Count is how many mini-sockets (TIME_WAIT or FIN_WAIT2 orphans) this
	// destination got while tracing (0 in a snapshot); Current and Peak
	// their population.
	Count    int64  `json:"count"`
	Current  int64  `json:"current"`
	Peak     int64  `json:"peak"`
	PeakPerS uint64 `json:"peak_per_s"`
}

// Orphans describes FIN_WAIT2 orphans: the application closed, the peer
// never sent its FIN, and the kernel holds the 4-tuple for
// tcp_fin_timeout seconds.
type Orphans struct {
	// Current counts the orphan mini-sockets at the end, including those
	// found at start (Preexisting) not yet seen ending.
	Current     int64 `json:"current"`
	Preexisting int   `json:"preexisting"`
	// FullSockets counts full sockets in FIN_WAIT2 at the end: half-closed
	// by shutdown(), or closed while tcp_fin_timeout exceeds 60 s (the
	// kernel then keeps the full socket, not a mini-socket, for the
	// timeout).
	FullSockets int       `json:"full_sockets"`
	Peak        int64     `json:"peak"`
	Created     uint64    `json:"created"`
	PeakPerS    uint64    `json:"peak_per_s"`
	Ended       Ended     `json:"ended"`
	ByRole      ByRole    `json:"by_role"`
	Lifetime    Durations `json:"lifetime"`
	// WaitedP50S and WaitedMaxS (snapshot) are how long the orphans present
	// had waited for their peer's FIN (tcp_fin_timeout minus the time left
	// on their timer). A FIN that is merely late comes within
	// milliseconds: seconds mean peers that do not close.
	WaitedP50S float64 `json:"waited_p50_s,omitempty"`
	WaitedMaxS float64 `json:"waited_max_s,omitempty"`
}

// CloseWait describes sockets whose peer closed but whose application has
// not: only the application can end them.
type CloseWait struct {
	// Current is how many are in CLOSE_WAIT at the end.
	Current    int     `json:"current"`
	ThresholdS float64 `json:"threshold_s"`
	// Leaked lists those still open at the end and at least ThresholdS
	// old, oldest first. (Mid-trace snapshots, never the final report,
	// may hold only the oldest; LeakedTotal counts them all.)
	Leaked      []Leak `json:"leaked"`
	LeakedTotal int    `json:"-"`
	// ByProcess groups Leaked by the process holding them.
	ByProcess []LeakOwner `json:"by_process"`
}

// Age sources: how a leak's age is known.
const (
	// AgeTraced: tcptrace saw the socket enter CLOSE_WAIT.
	AgeTraced = "traced"
	// AgeTCPInfo: estimated from the socket's tcp_info (tcpi_last_ack_recv,
	// the time since the peer's FIN, unless the peer sent something
	// later): exact to a few milliseconds for a socket the application no
	// longer touches, otherwise too young.
	AgeTCPInfo = "tcp_info"
	// AgeCensus: neither: at least as old as the first census that saw it.
	AgeCensus = "census"
)

// Diagnoses of a CLOSE_WAIT leak: which kind of bug holds the sockets.
const (
	// DiagUnread: bytes still unread (Recv-Q > 0, the peer's FIN counting
	// as one): the application stopped reading these connections (a stuck
	// worker, a deadlock).
	DiagUnread = "unread"
	// DiagNotClosed: read to EOF (Recv-Q 0), never closed: a missing
	// close() after EOF or on an error path.
	DiagNotClosed = "not_closed"
	// DiagClientPool: this host connect()ed and the backend closed first
	// (an idle connection dropped by the server or a load balancer); the
	// client's connection pool never noticed.
	DiagClientPool = "client_pool"
)

// Leak is one CLOSE_WAIT socket past the threshold.
type Leak struct {
	PID     int    `json:"pid"`
	Comm    string `json:"comm"`
	Cmdline string `json:"cmdline"`
	Laddr   string `json:"laddr"`
	Lport   int    `json:"lport"`
	Raddr   string `json:"raddr"`
	Rport   int    `json:"rport"`
	// AgeS is how long it has been in CLOSE_WAIT, AgeSource how that is
	// known (AgeTraced, AgeTCPInfo, or AgeCensus: a lower bound), and
	// Since the wall-clock time it entered CLOSE_WAIT.
	AgeS      float64   `json:"age_s"`
	AgeSource string    `json:"age_source"`
	Since     time.Time `json:"since"`
	// AgeLowerBound says the socket is at least AgeS old, maybe older:
	// known only from a census (AgeCensus), or from tcp_info on a socket
	// with TCP keepalive on, where each probe the peer answers restarts
	// what tcp_info counts.
	AgeLowerBound bool `json:"age_lower_bound"`
	// Preexisting: it was in CLOSE_WAIT before tracing began (always, in a
	// snapshot).
	Preexisting bool `json:"preexisting"`
	// Role is "server" (accepted: its local port is a listener's) or
	// "client" (this host connect()ed); "" when neither is known.
	Role string `json:"role"`
	// RecvQ is Recv-Q as ss shows it: bytes received and not read, plus
	// one for the peer's FIN until the application reads EOF. SendQ is
	// bytes sent and not acknowledged.
	RecvQ uint32 `json:"recv_q"`
	SendQ uint32 `json:"send_q"`
	// Diagnosis is this socket's kind of leak (DiagUnread, ...).
	Diagnosis string `json:"diagnosis"`
	Inode     uint64 `json:"inode,omitempty"`
	// FD is the owner's file descriptor for it; -1 when unknown.
	FD int `json:"fd"`
	// Holders is how many processes share the socket's file (after fork).
	Holders int `json:"holders,omitempty"`
	// NetNS is the socket's network namespace (with --all-netns only).
	NetNS uint32 `json:"netns,omitempty"`
}

// LeakOwner is a process holding leaked CLOSE_WAIT sockets.
type LeakOwner struct {
	PID     int     `json:"pid"`
	Comm    string  `json:"comm"`
	Cmdline string  `json:"cmdline"`
	Count   int     `json:"count"`
	OldestS float64 `json:"oldest_s"`
	// Since is when the oldest entered CLOSE_WAIT (wall clock), with the
	// oldest's AgeSource.
	Since         time.Time `json:"since"`
	AgeSource     string    `json:"age_source"`
	AgeLowerBound bool      `json:"age_lower_bound"`
	Lports        []int     `json:"lports"`
	// Peers are the remote addresses (addr:port) of its leaked sockets, at
	// most a few.
	Peers []string `json:"peers"`
	// NetNS is the network namespace of its leaked sockets (with
	// --all-netns only; a process leaking in two is listed twice).
	NetNS uint32 `json:"netns,omitempty"`
	// Diagnosis is the kind of leak of its largest group; Groups has
	// each (by local port for accepted sockets, by backend for
	// connect()ed ones), largest first.
	Diagnosis string      `json:"diagnosis"`
	Groups    []LeakGroup `json:"groups"`
	// FDs is how many file descriptors it has open and FDLimit its
	// RLIMIT_NOFILE soft limit (/proc/PID/limits), past which accept(),
	// connect() and open() fail with EMFILE; 0 when unknown.
	FDs     int `json:"fds"`
	FDLimit int `json:"fd_limit"`
	// GrowthPerMin is how many CLOSE_WAIT sockets it gained per minute
	// (of those it still holds): while traced (GrowthSource "traced"), or
	// from the sockets' tcp_info ages over the last GrowthWindowS
	// ("tcp_info"). GrowthSource is "" when it is unknown (then 0).
	GrowthPerMin  float64 `json:"growth_per_min"`
	GrowthSource  string  `json:"growth_source"`
	GrowthWindowS float64 `json:"growth_window_s"`
	// TimeToFDLimitS is how long until FDs reaches FDLimit at that rate:
	// 0 at the limit already, absent when it is not growing or either
	// number is unknown.
	TimeToFDLimitS *float64 `json:"time_to_fd_limit_s,omitempty"`
}

// LeakGroup is one process's leaked sockets of one kind: accepted on one
// local port, or connect()ed to one backend.
type LeakGroup struct {
	Diagnosis string `json:"diagnosis"`
	Role      string `json:"role"`
	// Lport is the local port (role "server" or unknown); Backend the
	// remote addr:port (role "client").
	Lport   int     `json:"lport,omitempty"`
	Backend string  `json:"backend,omitempty"`
	Count   int     `json:"count"`
	OldestS float64 `json:"oldest_s"`
	// Unread counts its sockets with Recv-Q > 0 (EOF not read yet),
	// ReadEOF those with Recv-Q 0; UnreadBytes sums the data bytes not
	// read (Recv-Q less the FIN).
	Unread      int    `json:"unread"`
	ReadEOF     int    `json:"read_eof"`
	UnreadBytes uint64 `json:"unread_bytes"`
	// IdleBeforeCloseS is the median time from the last data received
	// (or the connection's start) to the peer's FIN, from tcp_info: for
	// a backend that drops idle connections, about its idle timeout.
	IdleBeforeCloseS *float64 `json:"idle_before_close_s,omitempty"`
	// Peers are a few of the remote addresses.
	Peers []string `json:"peers"`
}

// PortExhaustion describes connect() calls that found no free local port.
type PortExhaustion struct {
	ConnectFailures uint64                `json:"connect_failures"`
	ByDestination   []DestinationFailures `json:"by_destination"`
	ByProcess       []ProcessFailures     `json:"by_process"`
	// PortRange is net.ipv4.ip_local_port_range: how many local ports one
	// (source address, destination) pair can use at once.
	PortRange PortRange `json:"port_range"`
	// Headroom lists the destinations using the most local ports, from a
	// census of every state (snapshot); empty otherwise.
	Headroom []PortHeadroom `json:"headroom"`
}

// PortHeadroom is how many local ports from the ephemeral range one source
// address uses towards one destination, in any state (TIME_WAIT and
// FIN_WAIT2 orphans included), against the range: connect() fails with
// EADDRNOTAVAIL when none is free.
type PortHeadroom struct {
	Laddr    string `json:"laddr"`
	Addr     string `json:"addr"`
	Port     int    `json:"port"`
	InUse    int    `json:"in_use"`
	TimeWait int    `json:"time_wait"`
	Free     int    `json:"free"`
}

// DestinationFailures counts failed connects to one destination.
type DestinationFailures struct {
	Addr     string `json:"addr"`
	Port     int    `json:"port"`
	Failures uint64 `json:"failures"`
	// TimeWait is how many TIME_WAIT sockets held ports to it at the peak.
	TimeWaitPeak int64 `json:"time_wait_peak"`
}

// ProcessFailures counts failed connects by process.
type ProcessFailures struct {
	PID      int    `json:"pid"`
	Comm     string `json:"comm"`
	Failures uint64 `json:"failures"`
}

// PortRange is the ephemeral port range.
type PortRange struct {
	Low  int `json:"low"`
	High int `json:"high"`
	Size int `json:"size"`
}

// Advice is one recommendation. Advice that is not a sysctl (a CLOSE_WAIT
// leak) has Sysctl "".
type Advice struct {
	ID          string `json:"id"`
	Severity    string `json:"severity"` // "warning" or "info"
	Sysctl      string `json:"sysctl"`
	Current     string `json:"current"`
	Recommended string `json:"recommended"`
	// Reason says, for a sysadmin, what was seen and why the change helps.
	Reason string `json:"reason"`
	// Evidence holds the measured numbers behind the advice.
	Evidence map[string]any `json:"evidence"`
	// NetNS is the network namespace the advice is for (with --all-netns
	// only).
	NetNS uint32 `json:"netns,omitempty"`
}

// Command is the outcome of the command tcptrace ran.
type Command struct {
	Argv     []string `json:"argv"`
	ExitCode int      `json:"exit_code"`
}
