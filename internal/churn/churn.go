// Package churn is tcptrace's TCP load generator: it makes many short TCP
// connections with a chosen side closing first, so that the kernel state
// transitions they cause are known in advance. The tcpchurn command wraps
// it; tests import it to drive traffic a tracer can be checked against.
//
// Every connection follows a fixed script. The side that closes second
// always waits for EOF first, so there is never a simultaneous close, and
// nobody closes with unread data, so no close turns into a RST. In the
// client and server modes each connection therefore causes exactly
// TransitionsPerConnection transitions of sock:inet_sock_set_state.
//
// One thing user space cannot rule out on loopback: the side that closes
// second ACKs the first FIN with a delayed ACK, and when it has received no
// data its ACK timeout is zero, so the timer may fire on the next tick on
// another CPU than its close() runs on. Loopback queues packets per CPU, so
// that pure ACK can reach the first closer after the second FIN did; the
// TIME_WAIT socket answers the stale ACK and the other side, gone by then,
// replies with a RST that ends the TIME_WAIT early. The transitions are
// unchanged. With both CPUs saturated this hits a few connections in
// 10,000. A payload of 1 byte or more avoids it in server mode (receiving
// data sets a 40ms ACK timeout), and quickack on the loopback route avoids
// it in every mode, leaving exactly 7 segments per connection:
//
//	ip route change local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1
package churn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Close names the side that closes a connection first.
type Close string

// The close modes.
const (
	// CloseClient: the client closes first and ends in TIME_WAIT. Client:
	// CLOSE->SYN_SENT->ESTABLISHED->FIN_WAIT1->FIN_WAIT2->CLOSE; server
	// child: LISTEN->SYN_RECV->ESTABLISHED->CLOSE_WAIT->LAST_ACK->CLOSE.
	CloseClient Close = "client"
	// CloseServer: the server closes first and ends in TIME_WAIT; the
	// mirror image of CloseClient.
	CloseServer Close = "server"
	// CloseLeak: the client closes first and the server never closes, so
	// its sockets sit in CLOSE_WAIT and the client's become FIN_WAIT2
	// orphans (see Config.Hold).
	CloseLeak Close = "leak"
)

// Transition counts that make up Result.Transitions.
const (
	// TransitionsPerConnection is what one completed connection causes in
	// the client and server modes, both ends counted (5 each, see Close).
	TransitionsPerConnection = 10
	// ListenerTransitions is what the built-in server's listening socket
	// causes: CLOSE->LISTEN at listen(), LISTEN->CLOSE when Run closes it.
	ListenerTransitions = 2
	// FailedConnectTransitions is what a connect() call that fails with
	// EADDRNOTAVAIL causes: tcp_v4_connect/tcp_v6_connect set SYN_SENT
	// before they look for a local port and CLOSE when there is none. The
	// socket already has its destination port, so port filters match it.
	// Go's dialer makes up to three such calls per failed attempt (see
	// Result.ConnectCalls).
	FailedConnectTransitions = 2
)

// ParseClose converts a command-line value to a Close.
func ParseClose(s string) (Close, error) {
	c := Close(s)
	return c, c.check()
}

// check reports whether c is one of the defined modes.
func (c Close) check() error {
	switch c {
	case CloseClient, CloseServer, CloseLeak:
		return nil
	}
	return fmt.Errorf("close must be client, server or leak, got %q", string(c))
}

// Config describes a run. There are no implicit defaults: the zero value is
// invalid, so a forgotten field fails loudly instead of running something
// other than what the caller meant to measure.
type Config struct {
	// Connections is how many connection attempts to make (> 0).
	Connections int
	// Concurrency is how many clients connect in parallel (> 0); capped
	// at Connections.
	Concurrency int
	// Close says which side closes first.
	Close Close
	// IPv6 makes the built-in server listen on ::1 instead of 127.0.0.1.
	// It cannot be combined with Target: give an IPv6 target instead.
	IPv6 bool
	// Target is the "host:port" of an external server, such as a
	// `tcpchurn --serve` in another process or network namespace. Empty
	// means Run starts its own server on loopback port 0. An external
	// server must follow the same Close mode and Payload.
	Target string
	// Rate caps new connection attempts per second over all clients; 0
	// means unlimited.
	Rate float64
	// Payload is how many bytes the server writes before its part of the
	// close; the client reads exactly that many.
	Payload int
	// KeepGoing makes failed connect() calls (EADDRNOTAVAIL once the local
	// port range is exhausted, say) count in Result.ConnectErrors instead
	// of ending the run. Either way the run stops after Connections
	// attempts, failed ones included. Errors after a successful connect
	// always end the run.
	KeepGoing bool
	// Hold is, in leak mode with the built-in server, how long the server
	// keeps the leaked sockets open after the clients are done: 0 closes
	// them before Run returns, a negative value holds them until ctx is
	// cancelled (which then ends the run normally). Elapsed excludes it.
	// It must be 0 in other modes and with Target.
	Hold time.Duration
	// OnHold, if set, is called once in leak mode with the built-in server
	// when the clients are done and every leaked socket is in CLOSE_WAIT,
	// before the Hold period starts. It gets the Result Run will return,
	// so a test can look at the held sockets while they exist.
	OnHold func(Result)
}

// Result reports a finished run.
type Result struct {
	// Connections is how many connections completed.
	Connections int
	// ConnectErrors is how many connect() calls failed (KeepGoing).
	ConnectErrors int
	// EADDRNOTAVAIL is how many of ConnectErrors were EADDRNOTAVAIL.
	EADDRNOTAVAIL int
	// ConnectCalls is how many connect() system calls the clients made,
	// one per socket. It exceeds Connections+ConnectErrors when ports run
	// short: Go's dialer retries a connect() that fails with EADDRNOTAVAIL
	// up to twice with a new socket (net's spuriousENOTAVAIL), so a failed
	// attempt is three calls and a successful one may follow failed calls.
	ConnectCalls int
	// Elapsed runs from the first connection attempt until both sides of
	// the last connection are done. It excludes the leak-mode Hold.
	Elapsed time.Duration
	// PerSecond is Connections / Elapsed.
	PerSecond float64
	// ServerAddr is the address the server listened on (the resolved
	// Target for an external server).
	ServerAddr string
	// Transitions is how many TCP state transitions the run caused, both
	// ends and the built-in server's listener included:
	// TransitionsPerConnection*Connections + ListenerTransitions +
	// FailedConnectTransitions*(ConnectCalls-Connections). It is -1 when
	// that is not predictable: leak mode (its last transitions hang on delayed ACKs
	// and Hold), an external Target (its server is not ours), connect
	// errors other than EADDRNOTAVAIL, and runs that failed. When Run
	// returns, all of them have happened (see settle), not necessarily
	// been read by a tracer.
	Transitions int
	// ServerPID is the pid of the process that ran the server: ours with
	// the built-in server, 0 for an external Target.
	ServerPID int
}

// validate checks cfg; the messages name the fields as tcpchurn's flags do.
func (cfg *Config) validate() error {
	switch {
	case cfg.Connections <= 0:
		return fmt.Errorf("connections must be > 0, got %d", cfg.Connections)
	case cfg.Concurrency <= 0:
		return fmt.Errorf("concurrency must be > 0, got %d", cfg.Concurrency)
	case math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) || cfg.Rate < 0:
		return fmt.Errorf("rate must be a number >= 0, got %v", cfg.Rate)
	case cfg.Payload < 0:
		return fmt.Errorf("payload must be >= 0, got %d", cfg.Payload)
	case cfg.Target != "" && cfg.IPv6:
		return errors.New("ipv6 picks the built-in server's address and does not apply with a target; give an IPv6 target instead")
	case cfg.Hold != 0 && (cfg.Close != CloseLeak || cfg.Target != ""):
		return errors.New("hold only applies to leak mode with the built-in server")
	}
	if err := cfg.Close.check(); err != nil {
		return err
	}
	if cfg.Target != "" {
		if _, _, err := net.SplitHostPort(cfg.Target); err != nil {
			return fmt.Errorf("target %q: want host:port", cfg.Target)
		}
	}
	return nil
}

// Run makes the connections cfg describes and reports how fast. It returns
// ctx.Err() if ctx is cancelled before the clients are done, and the first
// error that ended the run otherwise; the Result then holds the counts so
// far.
func Run(ctx context.Context, cfg Config) (Result, error) {
	res := Result{Transitions: -1}
	if err := cfg.validate(); err != nil {
		return res, err
	}
	r := &runner{cfg: &cfg, network: "tcp4", dialCtx: context.Background()}
	r.dialer.KeepAlive = -1
	r.dialer.SetMultipathTCP(false)

	var srv *Server
	if cfg.Target == "" {
		host := "127.0.0.1"
		if cfg.IPv6 {
			host, r.network = "::1", "tcp6"
		}
		if cfg.Close == CloseLeak {
			if err := checkFDs(cfg.Connections + cfg.Concurrency); err != nil {
				return res, err
			}
		}
		var err error
		if srv, err = Listen(ctx, r.network, net.JoinHostPort(host, "0"), cfg.Close, cfg.Payload); err != nil {
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				// A fresh network namespace (ip netns add) has lo down,
				// which takes ::1 away; IPv6 may also be disabled.
				err = fmt.Errorf("%w (is the loopback interface up? ip link set lo up)", err)
			}
			return res, err
		}
		defer srv.Close()
		r.raddr = srv.Addr()
		res.ServerPID = os.Getpid()
	} else {
		var err error
		if r.raddr, err = resolve(ctx, cfg.Target); err != nil {
			return res, err
		}
		if r.raddr.Addr().Is6() {
			r.network = "tcp6"
		}
		// An external server may not answer; let ctx cut a dial short.
		// The built-in one always answers at once, and a cancellable
		// context costs every dial a watcher registration.
		r.dialCtx = ctx
	}
	r.raddrStr = r.raddr.String()
	res.ServerAddr = r.raddrStr
	if cfg.Rate > 0 {
		r.limit = &limiter{interval: time.Duration(float64(time.Second) / cfg.Rate)}
	}
	tallies := make([]tally, min(cfg.Concurrency, cfg.Connections))
	stop := context.AfterFunc(ctx, func() {
		r.fail(ctx.Err())
		// Unblock clients waiting on a server that may never answer.
		for i := range tallies {
			if c := tallies[i].conn.Load(); c != nil {
				c.SetDeadline(time.Now())
			}
		}
	})
	defer stop()

	start := time.Now()
	if r.limit != nil {
		r.limit.start = start
	}
	var wg sync.WaitGroup
	for i := range tallies {
		wg.Go(func() { r.work(ctx, &tallies[i]) })
	}
	wg.Wait()
	for i := range tallies {
		t := &tallies[i]
		res.Connections += t.done
		res.ConnectErrors += t.connectErrors
		res.EADDRNOTAVAIL += t.eaddrnotavail
		res.ConnectCalls += t.sockets
	}
	err := r.error()
	if err == nil && srv != nil {
		err = waitHandled(ctx, srv, res.Connections)
	}
	res.Elapsed = time.Since(start)
	if s := res.Elapsed.Seconds(); s > 0 {
		res.PerSecond = float64(res.Connections) / s
	}
	if err != nil {
		return res, err
	}
	if srv == nil {
		return res, nil
	}

	if cfg.Close == CloseLeak {
		if cfg.OnHold != nil {
			cfg.OnHold(res)
		}
		hold(ctx, cfg.Hold)
		srv.Close()
		return res, nil
	}
	srv.Close()
	// Bounded, and returns as soon as the kernel is done: on an idle
	// machine within a millisecond, on a loaded one (ksoftirqd behind
	// other work, delayed ACKs) it has taken more than a second.
	settle(cfg.IPv6, r.raddr.Port(), settleTimeout)
	if res.ConnectErrors == res.EADDRNOTAVAIL {
		res.Transitions = TransitionsPerConnection*res.Connections +
			ListenerTransitions + FailedConnectTransitions*(res.ConnectCalls-res.Connections)
	}
	return res, nil
}

// settleTimeout bounds how long Run waits for the kernel to finish the
// closes before it returns (see settle).
const settleTimeout = 5 * time.Second

// runner is the state the clients of one run share.
type runner struct {
	cfg      *Config
	network  string
	raddr    netip.AddrPort
	raddrStr string // raddr.String(), formatted once
	dialer   net.Dialer
	dialCtx  context.Context
	limit    *limiter
	attempts atomic.Int64
	stop     atomic.Bool // set with err; checked once per attempt

	mu  sync.Mutex
	err error
}

// tally is one client's counts, summed after the run so the clients share
// no counters on the hot path, and its connection in progress.
type tally struct {
	done, connectErrors, eaddrnotavail int
	sockets                            int // connect() calls, see Result.ConnectCalls
	conn                               atomic.Pointer[net.TCPConn]
	_                                  [64]byte // keep clients off each other's cache line
}

// fail ends the run with err unless it already ended.
func (r *runner) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	r.stop.Store(true)
}

// error is the error that ended the run, or nil.
func (r *runner) error() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// work is one client: it claims attempts until Connections have been made.
func (r *runner) work(ctx context.Context, t *tally) {
	// One buffer per client, sized for the payload plus the EOF read so a
	// small payload and its EOF take one read each.
	buf := make([]byte, min(max(r.cfg.Payload+1, 512), 64<<10))
	// Go's dialer calls ControlContext once per socket, right before
	// connect(), its hidden EADDRNOTAVAIL retries included: the only way to
	// count the connect() calls, and so the transitions. The hook costs
	// the dial a few small allocations.
	dialer := r.dialer
	dialer.ControlContext = func(context.Context, string, string, syscall.RawConn) error {
		t.sockets++
		return nil
	}
	var timer *time.Timer
	if r.limit != nil {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
	}
	for !r.stop.Load() && r.attempts.Add(1) <= int64(r.cfg.Connections) {
		if r.limit != nil {
			if err := r.limit.wait(ctx, timer); err != nil {
				r.fail(err)
				return
			}
		}
		c, err := r.dial(&dialer)
		if err != nil {
			if ctx.Err() != nil {
				r.fail(ctx.Err())
				return
			}
			t.connectErrors++
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				t.eaddrnotavail++
			}
			if !r.cfg.KeepGoing {
				r.fail(connectError(r.raddr, err))
				return
			}
			continue
		}
		// Published for the cancellation above, which sets stop before it
		// looks: either it sees c or we see stop.
		t.conn.Store(c)
		if r.stop.Load() {
			c.SetDeadline(time.Now())
		}
		err = r.converse(c, buf)
		t.conn.Store(nil)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			r.fail(err)
			return
		}
		t.done++
	}
}

// dial connects one socket to the server. It goes through DialContext
// with the address as a string: Dialer.DialTCP turns a zero local
// netip.AddrPort into &TCPAddr{} and bind()s the socket to 0.0.0.0:0 before
// connect(). That costs a system call and, worse, picks the local port the
// bind() way: with different TIME_WAIT reuse rules, and failing with
// EADDRINUSE from bind() instead of EADDRNOTAVAIL from connect() when the
// ports run out.
func (r *runner) dial(d *net.Dialer) (*net.TCPConn, error) {
	c, err := d.DialContext(r.dialCtx, r.network, r.raddrStr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// converse runs the client side of one connected socket and closes it.
func (r *runner) converse(c *net.TCPConn, buf []byte) error {
	var err error
	if r.cfg.Close == CloseServer {
		// The server closes first: read its payload and its FIN, so our
		// close is the second one and leaves nothing unread.
		var n int
		n, err = readToEOF(c, buf)
		if err == nil && n != r.cfg.Payload {
			err = fmt.Errorf("server %s sent %d bytes before closing, want %d (do the payload settings match?)", r.raddr, n, r.cfg.Payload)
		}
	} else if r.cfg.Payload > 0 {
		// We close first, but only after reading the whole payload: data
		// left unread would turn our FIN into a RST.
		err = readFull(c, buf, r.cfg.Payload)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("server %s closed before sending the %d-byte payload (do the payload and close settings match?)", r.raddr, r.cfg.Payload)
		}
	}
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}

// readToEOF reads and discards until EOF and returns how many bytes came.
func readToEOF(c *net.TCPConn, buf []byte) (int, error) {
	total := 0
	for {
		n, err := c.Read(buf)
		total += n
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// readFull reads and discards exactly n bytes, len(buf) at a time.
func readFull(c *net.TCPConn, buf []byte, n int) error {
	for n > 0 {
		m, err := io.ReadFull(c, buf[:min(n, len(buf))])
		n -= m
		if err != nil {
			return err
		}
	}
	return nil
}

// waitHandled waits until the server has finished n connections. In client
// mode the clients are done once they have closed, which can be before the
// server even accepted the connection; stopping the clock (and closing the
// listener) then would cut those connections short.
func waitHandled(ctx context.Context, srv *Server, n int) error {
	const stall = 10 * time.Second // no connection finished for this long
	last, since := srv.Handled(), time.Now()
	for {
		h := srv.Handled()
		switch {
		case h >= n:
			return nil
		case srv.Err() != nil:
			return srv.Err()
		case ctx.Err() != nil:
			return ctx.Err()
		case h != last:
			last, since = h, time.Now()
		case time.Since(since) > stall:
			return fmt.Errorf("server finished only %d of %d connections and made no progress for %v", h, n, stall)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// hold waits for the leak-mode Hold period.
func hold(ctx context.Context, d time.Duration) {
	switch {
	case d < 0:
		<-ctx.Done()
	case d > 0:
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// limiter spaces connection attempts interval apart over all clients. Each
// attempt reserves the next free slot, and a slot missed is not made up
// later, so the rate never exceeds the cap, not even in bursts.
type limiter struct {
	start    time.Time
	interval time.Duration
	next     atomic.Int64 // the next free slot, in ns since start
}

// wait blocks until the caller's slot; t is the caller's own stopped timer.
func (l *limiter) wait(ctx context.Context, t *time.Timer) error {
	now := int64(time.Since(l.start))
	for {
		next := l.next.Load()
		at := max(next, now)
		if !l.next.CompareAndSwap(next, at+int64(l.interval)) {
			continue
		}
		if at <= now {
			return nil
		}
		t.Reset(time.Duration(at - now))
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// resolve turns a "host:port" target into one address to dial.
func resolve(ctx context.Context, target string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(target); err == nil {
		if ap.Port() == 0 {
			return ap, fmt.Errorf("target %q: port 0", target)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	host, portStr, _ := net.SplitHostPort(target) // validated already
	port, err := net.DefaultResolver.LookupPort(ctx, "tcp", portStr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("target %q: %v", target, err)
	}
	if port == 0 {
		return netip.AddrPort{}, fmt.Errorf("target %q: port 0", target)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("target %q: %v", target, err)
	}
	// Prefer IPv4 like Go's dialer does when a name has both.
	best := addrs[0]
	for _, a := range addrs {
		if a.Unmap().Is4() {
			best = a
			break
		}
	}
	return netip.AddrPortFrom(best.Unmap(), uint16(port)), nil
}

// checkFDs fails early when leak mode would run out of file descriptors:
// the built-in server keeps one per connection, and hitting the limit
// mid-run would leave clients connected to a server that stopped accepting.
func checkFDs(need int) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return nil // no limit we can see; accept would report EMFILE
	}
	const spare = 64 // stdio, the listener, Go's epoll and timer fds
	if uint64(need)+spare > rl.Cur {
		return fmt.Errorf("leak mode keeps every connection open, which needs about %d file descriptors; the limit is %d (raise ulimit -n or make fewer connections)", need+spare, rl.Cur)
	}
	return nil
}

// connectError describes a failed connect() with its errno's name, and for
// the errors a user can act on, the likely cause.
func connectError(raddr netip.AddrPort, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("connect %s: %v", raddr, err)
	}
	msg := fmt.Sprintf("connect %s: %s (%s)", raddr, errno.Error(), errnoName(errno))
	switch errno {
	case syscall.EADDRNOTAVAIL:
		msg += ": the local port range is exhausted (see net.ipv4.ip_local_port_range, or use keep-going to count these)"
	case syscall.ECONNREFUSED:
		msg += ": nothing listens there"
	case syscall.ENETUNREACH:
		if raddr.Addr().IsLoopback() {
			// A fresh network namespace (ip netns add) has lo down.
			msg += ": is the loopback interface up? (ip link set lo up)"
		}
	case syscall.EMFILE, syscall.ENFILE:
		msg += ": out of file descriptors"
	}
	return errors.New(msg)
}

// errnoName is the C name of the errors connect() can plausibly return.
func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EADDRNOTAVAIL:
		return "EADDRNOTAVAIL"
	case syscall.EADDRINUSE:
		return "EADDRINUSE"
	case syscall.ECONNREFUSED:
		return "ECONNREFUSED"
	case syscall.ECONNRESET:
		return "ECONNRESET"
	case syscall.ETIMEDOUT:
		return "ETIMEDOUT"
	case syscall.ENETUNREACH:
		return "ENETUNREACH"
	case syscall.EHOSTUNREACH:
		return "EHOSTUNREACH"
	case syscall.EMFILE:
		return "EMFILE"
	case syscall.ENFILE:
		return "ENFILE"
	case syscall.ENOBUFS:
		return "ENOBUFS"
	case syscall.EAGAIN:
		return "EAGAIN"
	case syscall.EPERM:
		return "EPERM"
	case syscall.EACCES:
		return "EACCES"
	}
	return "errno " + strconv.Itoa(int(e))
}
