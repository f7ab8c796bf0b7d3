package probe

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// markTargetSockets marks the sockets process pid already holds, for the
// pid filter. The kernel side marks a socket when the process connect()s,
// listen()s or close()s it, and the children of its listeners by their
// port; without this, a connection or a listener opened before tcptrace
// started would only show up from its close. Each socket is borrowed with
// pidfd_getfd(2) just long enough to use it as the key of the
// socket-storage map; listeners also go into the port map. Returns how
// many sockets were marked.
func markTargetSockets(socks, ports *ebpf.Map, pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("--pid %d: no such process", pid)
		}
		return 0, fmt.Errorf("listing the sockets of pid %d: %w", pid, err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, fmt.Errorf("pidfd_open(%d): %w", pid, err)
	}
	defer unix.Close(pidfd)
	marked := 0
	for _, e := range entries {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		target, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, target, 0)
		if err != nil {
			continue // closed meanwhile, or not ours to take
		}
		// Only TCP sockets can carry the mark; the others fail, harmlessly.
		if socks.Update(uint32(fd), uint8(1), ebpf.UpdateAny) == nil {
			marked++
			if port, ok := listenPort(fd); ok {
				_ = ports.Update(port, uint8(1), ebpf.UpdateAny)
			}
		}
		unix.Close(fd)
	}
	return marked, nil
}

// listenPort returns the port-map key of a listening socket.
func listenPort(fd int) (sockstateTtPort, bool) {
	if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || on == 0 {
		return sockstateTtPort{}, false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return sockstateTtPort{}, false
	}
	var port int
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		port = a.Port
	case *unix.SockaddrInet6:
		port = a.Port
	default:
		return sockstateTtPort{}, false
	}
	// The socket's network namespace, as the kernel side sees it.
	nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		return sockstateTtPort{}, false
	}
	defer unix.Close(nsfd)
	var st unix.Stat_t
	if err := unix.Fstat(nsfd, &st); err != nil {
		return sockstateTtPort{}, false
	}
	return sockstateTtPort{Netns: uint32(st.Ino), Port: uint16(port)}, true
}
