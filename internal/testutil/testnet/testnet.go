// Package testnet gives privileged tests a network namespace of their own,
// so their traffic stays on a loopback nobody else uses and their sysctls
// change nothing on the host. Only tests import it.
package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/event"
)

// RequireRoot skips a test that needs root, with a clear message, unless
// CI=true: CI runs as root, so there a missing privilege is a failure.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("skipping privileged test in -short mode")
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (it loads BPF programs and creates network namespaces), and CI=true: refusing to skip")
	}
	t.Skip("skipping: needs root to load BPF programs and create network namespaces (run `sudo make test`)")
}

// NS is a network namespace created for one test.
type NS struct {
	Name    string
	inode   uint32
	deleted bool
}

// New creates a network namespace with loopback up, deleted when the test
// ends.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("the ip command (Debian package iproute2) is needed: run scripts/setup.sh")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := &NS{Name: "tcptrace-test-" + hex.EncodeToString(b)}
	run(t, "ip", "netns", "add", ns.Name)
	t.Cleanup(func() {
		if !ns.deleted {
			ns.Delete(t)
		}
	})
	run(t, "ip", "-n", ns.Name, "link", "set", "lo", "up")
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns.Name, &st); err != nil {
		t.Fatalf("stat network namespace: %v", err)
	}
	ns.inode = uint32(st.Ino)
	return ns
}

// Delete deletes the namespace now (it is otherwise deleted when the test
// ends). The kernel tears it down a little later, killing what is left
// of its sockets.
func (ns *NS) Delete(t testing.TB) {
	t.Helper()
	ns.deleted = true
	if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
		t.Errorf("deleting network namespace %s: %v: %s", ns.Name, err, out)
	}
}

// Inode is the namespace's inode number, as the kernel reports it.
func (ns *NS) Inode() uint32 { return ns.inode }

// Sysctl sets a sysctl inside the namespace.
func (ns *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	run(t, "ip", "netns", "exec", ns.Name, "sysctl", "-q", "-w", key+"="+value)
}

// Command returns a command that runs inside the namespace.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Do runs fn on an OS thread that has entered the namespace, so the
// sockets fn creates live there. fn must not start goroutines that create
// sockets: they would run on other threads, in the host's namespace. fn
// runs on another goroutine, so it reports failure by returning an error
// (it must not call t.Fatal).
func (ns *NS) Do(t testing.TB, fn func() error) {
	t.Helper()
	done := make(chan struct{})
	var failure string
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is never unlocked: if restoring the namespace failed
		// it must not return to Go's pool, so it dies with this goroutine.
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			failure = fmt.Sprintf("opening own netns: %v", err)
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns.Name)
		if err != nil {
			failure = fmt.Sprintf("opening netns %s: %v", ns.Name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			failure = fmt.Sprintf("entering netns %s: %v", ns.Name, err)
			return
		}
		defer func() {
			if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil {
				runtime.UnlockOSThread()
			}
		}()
		if err := fn(); err != nil {
			failure = err.Error()
		}
	}()
	<-done
	if failure != "" {
		t.Fatal(failure)
	}
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// Connect makes n connections to a listener of its own on addr (e.g.
// "127.0.0.1:0"), one at a time; the client closes first, or the server
// if serverCloses, and the other side closes on EOF, so every connection
// makes exactly the same ten transitions. Call it inside Do.
func Connect(network, addr string, n int, serverCloses bool) error {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	buf := make([]byte, 1)
	for range n {
		c, err := net.Dial(network, ln.Addr().String())
		if err != nil {
			return err
		}
		s, err := ln.Accept()
		if err != nil {
			c.Close()
			return err
		}
		first, second := c, s
		if serverCloses {
			first, second = s, c
		}
		first.Close()
		if _, err := second.Read(buf); err != io.EOF {
			second.Close()
			return fmt.Errorf("want EOF after the peer closed, got %v", err)
		}
		second.Close()
	}
	return nil
}

// settleTimeout bounds how long Settle waits for the kernel. The steps it
// waits for take microseconds on an idle machine; the bound is for a
// loaded one, and a socket still busy past it is a failure worth seeing.
const settleTimeout = 10 * time.Second

// Settle waits until every TCP socket in the namespace is in one of the
// states in keep (mini-sockets by their substate), and fails the test,
// listing the others, if that takes longer than 10 s. See WaitSettled.
func (ns *NS) Settle(t testing.TB, keep ...event.State) {
	t.Helper()
	ns.Do(t, func() error { return WaitSettled(keep...) })
}

// WaitGone is Settle the other way round: it waits until no TCP socket in
// the namespace is in any of the given states.
func (ns *NS) WaitGone(t testing.TB, states ...event.State) {
	t.Helper()
	ns.Do(t, func() error { return waitNone(census.Mask(states...)) })
}

// WaitSettled is Settle for code already inside Do: it waits, in the
// calling thread's network namespace, until every TCP socket is in one of
// the states in keep.
//
// The last steps of a connection's close (the peer's ACK, its FIN, the
// ACK of that) run in softirq: on an idle machine at once, inside the
// close() that sent the segment, but on a loaded one in ksoftirqd, after
// close() has returned, or a delayed ACK later. A test that counts what a
// close did waits here for the kernel to have done it, instead of sleeping
// for a guessed while. The state changes are traced when they happen, so
// once the sockets have settled every record about them has been written.
func WaitSettled(keep ...event.State) error {
	return waitNone(census.AllStates &^ census.Mask(keep...))
}

// waitNone waits until the census finds no socket in the states of busy.
func waitNone(busy census.StateMask) error {
	deadline := time.Now().Add(settleTimeout)
	for {
		socks, err := census.Dump(busy)
		if err != nil {
			return fmt.Errorf("waiting for sockets to settle: %w", err)
		}
		if len(socks) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, s := range socks {
				fmt.Fprintf(&b, "\n  %s %s -> %s", s.State, s.Local, s.Remote)
			}
			return fmt.Errorf("after %s, %d sockets are still in %s:%s", settleTimeout, len(socks), busy, b.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// holderFDs is how many sockets Populate gives each holder process: below
// the 20,000 hard RLIMIT_NOFILE of the project's machines, which tests
// cannot raise (no CAP_SYS_RESOURCE).
const holderFDs = 16000

// population is what Populate holds open until the test ends.
type population struct {
	// ports are the listeners' ports on 127.0.0.1.
	ports []int
	// holders are the processes holding the connections' sockets, at
	// most holderFDs each.
	holders   []*exec.Cmd
	listeners []int
}

// close ends the holders (closing their sockets) and the listeners.
func (p *population) close() {
	for _, h := range p.holders {
		_ = h.Process.Kill()
		_ = h.Wait()
	}
	for _, fd := range p.listeners {
		unix.Close(fd)
	}
	p.holders, p.listeners = nil, nil
}

// Populate makes many loopback sockets in ns quickly, with plain system
// calls on one thread (no Go netpoller): `established` open connections
// (two sockets each) and `closeWait` connections whose client closed (a
// CLOSE_WAIT socket and an orphan each), spread over `listeners`
// listeners on 127.0.0.1 in the namespace, whose local port range is
// widened so that there are ports for well over 100,000 sockets.
//
// The sockets are held by `sleep` processes, holderFDs each,
// which inherit them: one process could not hold them all. Established
// connections come first, so a holder holds either kind or, at the
// boundary, both. Everything is closed when the test ends.
func (ns *NS) Populate(t testing.TB, listeners, established, closeWait int) {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal("sleep (coreutils) is needed to hold the sockets")
	}
	ns.Sysctl(t, "net.ipv4.ip_local_port_range", "1024 65535")
	ns.Sysctl(t, "net.core.somaxconn", "4096")
	p := &population{}
	t.Cleanup(p.close)
	ns.Do(t, func() error {
		for range listeners {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("socket: %w", err)
			}
			p.listeners = append(p.listeners, fd)
			if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				return fmt.Errorf("bind: %w", err)
			}
			if err := unix.Listen(fd, 4096); err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			sa, err := unix.Getsockname(fd)
			if err != nil {
				return fmt.Errorf("getsockname: %w", err)
			}
			p.ports = append(p.ports, sa.(*unix.SockaddrInet4).Port)
		}
		var batch []*os.File
		hand := func() error {
			if len(batch) == 0 {
				return nil
			}
			// No Stdin/Stdout: Start then starts no goroutine, and the
			// fork happens on this thread.
			h := exec.Command(sleep, "infinity")
			h.ExtraFiles = batch
			err := h.Start()
			for _, f := range batch {
				f.Close()
			}
			batch = batch[:0]
			if err != nil {
				return fmt.Errorf("starting a socket holder: %w", err)
			}
			p.holders = append(p.holders, h)
			return nil
		}
		keep := func(fd int) error {
			batch = append(batch, os.NewFile(uintptr(fd), "socket"))
			if len(batch) >= holderFDs {
				return hand()
			}
			return nil
		}
		for i := range established + closeWait {
			ln := p.listeners[i%listeners]
			c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("socket (connection %d): %w", i, err)
			}
			// The handshake completes inside connect() on loopback.
			if err := unix.Connect(c, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: p.ports[i%listeners]}); err != nil {
				unix.Close(c)
				return fmt.Errorf("connect (connection %d): %w", i, err)
			}
			s, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
			if err != nil {
				unix.Close(c)
				return fmt.Errorf("accept (connection %d): %w", i, err)
			}
			if i < established {
				if err := keep(c); err != nil {
					return err
				}
			} else {
				unix.Close(c)
			}
			if err := keep(s); err != nil {
				return err
			}
		}
		return hand()
	})
}

// Dumper opens a sock_diag socket in the namespace, closed when the test
// ends.
func (ns *NS) Dumper(t testing.TB) *census.Dumper {
	t.Helper()
	f, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := census.NewDumperNetNS(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
