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

	"golang.org/x/sys/unix"
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
	Name  string
	inode uint32
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
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("deleting network namespace %s: %v: %s", ns.Name, err, out)
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
