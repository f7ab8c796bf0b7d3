package census

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireRoot skips a test that needs root, except under CI=true, where a
// missing privilege is a failure: CI must run the real-socket tests.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root: creates a network namespace (ip netns add) and real TCP sockets in it"
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg + "; CI=true, so not skipping")
	}
	tb.Skip(msg)
}

// testNetns is a network namespace made for one test with `ip netns add`
// and deleted when the test ends.
//
// Code runs inside it through do(), which moves a locked OS thread there
// with setns(2) and back. This is enough because a socket belongs for life
// to the namespace it was created in: listeners, dialed connections (and
// their accepted peers) and sock_diag sockets created inside do() stay in
// the namespace, and can then be used from any goroutine. It keeps the
// sockets in this test process, so owner.Resolve can be checked against
// os.Getpid(); a helper subprocess under `ip netns exec` would need a
// protocol to report its sockets and pid back.
type testNetns struct {
	name string
	fd   int
}

func newTestNetns(tb testing.TB) *testNetns {
	tb.Helper()
	requireRoot(tb)
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		tb.Fatal(err)
	}
	name := "tcptrace-census-" + hex.EncodeToString(rnd[:])
	run(tb, "ip", "netns", "add", name)
	ns := &testNetns{name: name, fd: -1}
	tb.Cleanup(func() {
		if ns.fd >= 0 {
			unix.Close(ns.fd)
		}
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			tb.Errorf("ip netns delete %s: %v: %s", name, err, out)
		}
	})
	run(tb, "ip", "-n", name, "link", "set", "lo", "up")
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		tb.Fatalf("open netns %s: %v", name, err)
	}
	ns.fd = fd
	return ns
}

func run(tb testing.TB, name string, args ...string) {
	tb.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// do runs fn on a locked OS thread that is inside the namespace, in a
// goroutine of its own.
func (ns *testNetns) do(tb testing.TB, fn func()) {
	tb.Helper()
	done := make(chan struct{})
	var fatal string
	go func() {
		defer close(done)
		leave, err := ns.enter()
		if err != nil {
			fatal = err.Error()
			return
		}
		defer func() {
			if err := leave(); err != nil {
				fatal = err.Error()
			}
		}()
		fn()
	}()
	<-done
	if fatal != "" {
		tb.Fatal(fatal)
	}
}

// enter locks the calling goroutine to its thread and moves the thread into
// the namespace; leave moves it back and unlocks it. If the thread cannot be
// moved back it stays locked, so that the runtime discards it when the
// goroutine ends.
func (ns *testNetns) enter() (leave func() error, err error) {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open own netns: %w", err)
	}
	if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
		unix.Close(orig)
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns %s: %w", ns.name, err)
	}
	return func() error {
		defer unix.Close(orig)
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns back from %s: %w", ns.name, err)
		}
		runtime.UnlockOSThread()
		return nil
	}, nil
}

// pair is one loopback TCP connection made inside a namespace.
type pair struct {
	client, server *net.TCPConn
}

// connect makes n connections to ln from inside ns, accepting each.
func connect(tb testing.TB, ns *testNetns, ln *net.TCPListener, n int) []pair {
	tb.Helper()
	pairs := make([]pair, 0, n)
	accepted := make(chan *net.TCPConn, n)
	acceptErr := make(chan error, 1)
	go func() {
		for range n {
			c, err := ln.AcceptTCP()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()
	var dialErr error
	ns.do(tb, func() {
		d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}
		for range n {
			c, err := d.Dial(ln.Addr().Network(), ln.Addr().String())
			if err != nil {
				dialErr = err
				return
			}
			pairs = append(pairs, pair{client: c.(*net.TCPConn)})
		}
	})
	if dialErr != nil {
		tb.Fatalf("dial %v: %v", ln.Addr(), dialErr)
	}
	// Match accepted conns to clients by address.
	byAddr := make(map[string]int, n)
	for i, p := range pairs {
		byAddr[p.client.LocalAddr().String()] = i
	}
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case c := <-accepted:
			i, ok := byAddr[c.RemoteAddr().String()]
			if !ok {
				tb.Fatalf("accepted unknown peer %v", c.RemoteAddr())
			}
			pairs[i].server = c
		case err := <-acceptErr:
			tb.Fatalf("accept: %v", err)
		case <-timeout:
			tb.Fatal("accept timed out")
		}
	}
	tb.Cleanup(func() {
		for _, p := range pairs {
			p.client.Close()
			p.server.Close()
		}
	})
	return pairs
}

// listen opens a TCP listener on addr ("127.0.0.1:0", "[::1]:0") inside ns.
func listen(tb testing.TB, ns *testNetns, network, addr string) *net.TCPListener {
	tb.Helper()
	var ln net.Listener
	var err error
	ns.do(tb, func() {
		lc := net.ListenConfig{KeepAlive: -1}
		ln, err = lc.Listen(tb.Context(), network, addr)
	})
	if err != nil {
		tb.Fatalf("listen %s in %s: %v", addr, ns.name, err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// inode returns the inode of a connection's socket file.
func inode(tb testing.TB, c syscall.Conn) uint64 {
	tb.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		tb.Fatal(err)
	}
	if serr != nil {
		tb.Fatal(serr)
	}
	return st.Ino
}
