package churn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
)

// Server accepts TCP connections and ends each one the way its Close mode
// says, so that the kernel state transitions on its side are predictable:
//
//   - CloseServer: write the payload, close at once (we close first; the
//     client never sends data, so nothing is left unread and no RST follows).
//   - CloseClient: write the payload, read until EOF, then close.
//   - CloseLeak: write the payload, read until EOF, then keep the socket
//     open in CLOSE_WAIT until Release or Close.
//
// Run starts one internally; Listen exposes it so tests can run a server in
// another process (tcpchurn --serve) or keep one up across several runs.
type Server struct {
	ln      *net.TCPListener
	addr    netip.AddrPort
	mode    Close
	payload []byte

	// handled counts connections whose server side is finished: closed, or
	// (leak mode) at EOF and held. Run waits on it before it stops the clock.
	handled atomic.Int64

	mu      sync.Mutex
	active  map[*net.TCPConn]struct{} // accepted, not yet closed or held
	leaked  []*net.TCPConn            // leak mode: at EOF, open on purpose
	closing bool
	err     error

	wg        sync.WaitGroup // accept loop and handlers
	done      chan struct{}  // closed when the accept loop exits
	closeOnce sync.Once
	stopAfter func() bool
}

// inlinePayload is the largest payload the accept loop writes itself in
// server mode. A new socket's send buffer (net.ipv4.tcp_wmem's default,
// 16 KiB) takes it whole, so the write never waits for the client.
const inlinePayload = 4096

// drainBufs holds the scratch buffers handlers read into while they wait for
// EOF. Clients send nothing, so the size only bounds misbehaving peers; the
// pool keeps the hot path free of a per-connection allocation.
var drainBufs = sync.Pool{New: func() any { return new([512]byte) }}

// Listen starts a Server on addr ("127.0.0.1:0", "[::1]:8080", ...) for the
// given network ("tcp", "tcp4" or "tcp6"). payload is how many bytes the
// server writes to each connection before its part of the close.
//
// ctx bounds the listen call; cancelling it later closes the server, as
// Close does. The listener has SO_REUSEADDR (Go's default) and no
// keep-alive or MPTCP, which would add socket options or, for MPTCP, extra
// sockets whose transitions a tracer would see.
func Listen(ctx context.Context, network, addr string, mode Close, payload int) (*Server, error) {
	if err := mode.check(); err != nil {
		return nil, err
	}
	if payload < 0 {
		return nil, fmt.Errorf("payload must be >= 0, got %d", payload)
	}
	lc := net.ListenConfig{KeepAlive: -1}
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	ln, ok := l.(*net.TCPListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("listen %s %s: not a tcp network", network, addr)
	}
	s := &Server{
		ln:      ln,
		addr:    ln.Addr().(*net.TCPAddr).AddrPort(),
		mode:    mode,
		payload: bytes.Repeat([]byte{'x'}, payload),
		active:  make(map[*net.TCPConn]struct{}),
		done:    make(chan struct{}),
	}
	s.addr = netip.AddrPortFrom(s.addr.Addr().Unmap(), s.addr.Port())
	s.wg.Add(1)
	go s.serve()
	// Under mu: if ctx is already done, the callback runs at once and its
	// Close must not read stopAfter before it is set.
	s.mu.Lock()
	s.stopAfter = context.AfterFunc(ctx, func() { s.Close() })
	s.mu.Unlock()
	return s, nil
}

// Addr is the address the server listens on, with the port the kernel chose
// when Listen was given port 0.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Handled is how many connections the server side has finished: closed in
// client and server modes, at EOF and held in leak mode.
func (s *Server) Handled() int { return int(s.handled.Load()) }

// Held is how many connections leak mode is holding open in CLOSE_WAIT.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.leaked)
}

// Open is how many accepted connections are still open, held ones included.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.active) + len(s.leaked)
}

// Err is the first error that stopped the server or failed a connection, or
// nil. Errors caused by Close itself are not reported.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Done is closed when the server stops accepting, after Close or a fatal
// accept error (see Err).
func (s *Server) Done() <-chan struct{} { return s.done }

// Release closes the connections leak mode is holding, which then finish
// their close (CLOSE_WAIT -> LAST_ACK -> CLOSE), and reports how many it
// closed. The server keeps accepting.
//
// The clients' FIN_WAIT2 orphans only live net.ipv4.tcp_fin_timeout (60s by
// default); released later than that, the peer answers our FIN with a RST.
func (s *Server) Release() int {
	s.mu.Lock()
	leaked := s.leaked
	s.leaked = nil
	s.mu.Unlock()
	for _, c := range leaked {
		c.Close()
	}
	return len(leaked)
}

// Close stops accepting, closes every connection still open (held ones and
// ones waiting for their client) and waits for the handlers to return. It
// is idempotent and always returns nil; it implements io.Closer.
//
// Connections still in the accept queue are reset by the kernel, and
// closing a connection the client has not finished is a server-first close;
// Run only calls Close once every connection is handled, so neither happens
// there.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		active, leaked := s.active, s.leaked
		s.active, s.leaked = nil, nil
		stop := s.stopAfter
		s.mu.Unlock()
		stop()
		s.ln.Close()
		for c := range active {
			c.Close()
		}
		for _, c := range leaked {
			c.Close()
		}
		s.wg.Wait()
	})
	return nil
}

// serve is the accept loop. Where a handler has to wait for its client's
// FIN, it gets a goroutine of its own so the loop keeps accepting;
// goroutines are cheap and their stacks reused, so a worker pool would only
// add a hand-off. In server mode nothing waits, and handling the connection
// inline is much faster than even that one hand-off: 36k instead of 24k
// connections/s on 2 cores, because the client blocked on our FIN no longer
// waits for a new goroutine to be scheduled.
func (s *Server) serve() {
	defer s.wg.Done()
	defer close(s.done)
	for {
		c, err := s.ln.AcceptTCP()
		if err != nil {
			// Go already retries ECONNABORTED; anything else (EMFILE
			// above all) would recur, so stop and let Err report it.
			if s.fail(acceptError(err)) {
				s.ln.Close()
			}
			return
		}
		if s.mode == CloseServer && len(s.payload) <= inlinePayload {
			// Nothing to wait for: write (into an empty send buffer, so
			// it cannot block) and close right here, which spares a
			// goroutine and the bookkeeping below on the hot path.
			s.wg.Add(1)
			s.handle(c)
			continue
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.active[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

// handle runs the server side of one connection.
func (s *Server) handle(c *net.TCPConn) {
	defer s.wg.Done()
	if len(s.payload) > 0 {
		if _, err := c.Write(s.payload); err != nil {
			s.finish(c, err)
			return
		}
	}
	if s.mode == CloseServer {
		s.finish(c, nil)
		return
	}
	// Wait for the client's FIN before closing: our close then comes
	// second (CLOSE_WAIT -> LAST_ACK) and there is no unread data to turn
	// it into a RST.
	buf := drainBufs.Get().(*[512]byte)
	_, err := readToEOF(c, buf[:])
	drainBufs.Put(buf)
	if err != nil || s.mode != CloseLeak {
		s.finish(c, err)
		return
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		c.Close()
		return
	}
	delete(s.active, c)
	s.leaked = append(s.leaked, c)
	s.mu.Unlock()
	s.handled.Add(1)
}

// finish closes c and accounts for it. Handled is only bumped after the
// close() so a caller that sees the count knows the FIN is on its way.
func (s *Server) finish(c *net.TCPConn, err error) {
	s.mu.Lock()
	delete(s.active, c)
	s.mu.Unlock()
	c.Close()
	if err != nil {
		s.fail(err)
		return
	}
	s.handled.Add(1)
}

// fail records err as the server's error unless the server is closing (then
// the error is our own doing) or already failed. It reports whether err was
// recorded.
func (s *Server) fail(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.err != nil {
		return false
	}
	s.err = err
	return true
}

// acceptError adds the likely cause to accept errors a user can fix.
func acceptError(err error) error {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return fmt.Errorf("%w (every open connection holds a file descriptor; raise ulimit -n or make fewer connections)", err)
	}
	return err
}
