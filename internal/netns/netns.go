// Package netns finds the network namespaces of a host and reads what
// tcptrace needs from each: whose it is (the container or pod of the
// processes in it, from their cgroup path), its own TCP sysctls and
// counters, and a sock_diag socket for its census.
//
// Namespaces are found through the processes in them (/proc/PID/ns/net,
// the lowest PID standing for each) and through ip-netns names
// (/run/netns/NAME), which may have no process at all. Reading another
// namespace's sysctls needs a thread inside it: /proc/sys/net answers
// for the network namespace of the thread that opens it, whatever
// process it belongs to, so ReadFacts enters the namespace with setns(2)
// on a locked thread of its own. setns into a network namespace needs
// CAP_SYS_ADMIN (in the user namespace that owns it); seeing other
// processes' ns links and fds needs CAP_SYS_PTRACE.
package netns

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/hostinfo"
	"github.com/tcptrace/tcptrace/internal/report"
)

// Namespace is a network namespace found on the host.
type Namespace struct {
	// Inode identifies it (as events and sock_diag name it).
	Inode uint32
	// Path opens it: /proc/PID/ns/net of its lowest-numbered process, or
	// its /run/netns entry when it has no process.
	Path string
	// Identity says whose it is.
	Identity report.NetNSIdentity
}

// Scan lists the network namespaces of the processes under procRoot
// (normally /proc) and the named ones under runNetNS (normally
// /run/netns; "" skips them), by inode. Processes that vanish or that
// tcptrace may not inspect are skipped; only failing to list procRoot is
// an error.
func Scan(procRoot, runNetNS string) ([]Namespace, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("listing processes to find network namespaces: %w", err)
	}
	pids := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	byIno := map[uint32]*Namespace{}
	for _, pid := range pids {
		path := filepath.Join(procRoot, strconv.Itoa(pid), "ns", "net")
		ino, err := inode(path)
		if err != nil || (byIno[ino] != nil && byIno[ino].Identity.PID != 0) {
			continue
		}
		// A kernel thread (no command line) says nothing of whose the
		// namespace is: it stands for it only until a process does.
		kthread := isKernelThread(procRoot, pid)
		if byIno[ino] != nil && kthread {
			continue
		}
		n := &Namespace{Inode: ino, Path: path}
		if !kthread {
			n.Identity = processIdentity(procRoot, pid)
		}
		byIno[ino] = n
	}
	if runNetNS != "" {
		names, _ := os.ReadDir(runNetNS) // no /run/netns: no named namespaces
		for _, e := range names {
			path := filepath.Join(runNetNS, e.Name())
			ino, err := inode(path)
			if err != nil {
				continue
			}
			if n := byIno[ino]; n != nil {
				// The name outlives any process: open it by name.
				n.Identity.Name, n.Path = e.Name(), path
				continue
			}
			byIno[ino] = &Namespace{Inode: ino, Path: path, Identity: report.NetNSIdentity{Name: e.Name()}}
		}
	}
	out := make([]Namespace, 0, len(byIno))
	for _, n := range byIno {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b Namespace) int { return cmp.Compare(a.Inode, b.Inode) })
	return out, nil
}

// isKernelThread says pid has no command line: a kernel thread (or a
// zombie, which says as little).
func isKernelThread(procRoot string, pid int) bool {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"))
	return err == nil && len(b) == 0
}

// Vanished says err means the process or namespace went away meanwhile:
// normal on a busy host, and no reason to warn.
func Vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// inode returns the namespace inode a ns file or bind mount refers to.
func inode(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return uint32(st.Ino), nil
}

// Own returns the inode of the calling process's network namespace.
func Own() (uint32, error) {
	ino, err := inode("/proc/self/ns/net")
	if err != nil {
		return 0, fmt.Errorf("finding this process's network namespace: %w", err)
	}
	return ino, nil
}

// processIdentity reads a process's name and container identity.
func processIdentity(procRoot string, pid int) report.NetNSIdentity {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	id := report.NetNSIdentity{PID: pid}
	if b, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
		id.Comm = strings.TrimRight(string(b), "\n")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
		id.ContainerID, id.PodUID, id.Runtime = ParseCgroup(b)
	}
	return id
}

var (
	// A pod's cgroup: ".../pod<UID>/..." (cgroupfs) or
	// "...-pod<UID_with_underscores>.slice/..." (systemd).
	podRe = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})`)
	// A container's cgroup ends in its 64-hex-digit ID, bare
	// (".../docker/ID", ".../kubepods/.../podUID/ID") or in a systemd
	// scope named by the runtime ("docker-ID.scope",
	// "cri-containerd-ID.scope", "crio-ID.scope", "libpod-ID.scope").
	idRe = regexp.MustCompile(`(?:^|/)(?:([a-z-]+)-)?([0-9a-f]{64})(?:\.scope)?$`)
)

// ParseCgroup reads /proc/PID/cgroup: the container ID, the Kubernetes
// pod UID and the runtime its path names, each "" when the path does not
// say (a process of the host itself). The cgroup v2 line ("0::/...") is
// preferred; on cgroup v1 the first line that names a container counts.
func ParseCgroup(b []byte) (containerID, podUID, runtime string) {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	slices.SortStableFunc(lines, func(a, b string) int {
		return cmp.Compare(btoi(!strings.HasPrefix(a, "0::")), btoi(!strings.HasPrefix(b, "0::")))
	})
	for _, line := range lines {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		path := strings.TrimSuffix(parts[2], "/")
		// Inside a container's own cgroup namespace, a nested path.
		path = strings.TrimSuffix(strings.TrimSuffix(path, "/init.scope"), "/container")
		pod := ""
		if m := podRe.FindStringSubmatch(path); m != nil {
			pod = strings.ReplaceAll(m[1], "_", "-")
		}
		id, rt := "", ""
		if m := idRe.FindStringSubmatch(path); m != nil {
			id = m[2]
			rt = runtimeOf(m[1], path)
		}
		if pod == "" && id == "" {
			continue
		}
		if pod != "" && rt == "" {
			rt = "kubepods"
		}
		return id, pod, rt
	}
	return "", "", ""
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// runtimeOf names the runtime from a scope prefix or the path.
func runtimeOf(prefix, path string) string {
	switch prefix {
	case "docker":
		return "docker"
	case "cri-containerd":
		return "containerd"
	case "crio", "crio-conmon":
		return "cri-o"
	case "libpod", "libpod-conmon":
		return "podman"
	}
	switch {
	case strings.Contains(path, "/docker/"):
		return "docker"
	case strings.Contains(path, "/libpod"):
		return "podman"
	case strings.Contains(path, "kubepods"):
		return "kubepods"
	}
	return "container"
}

// Facts are a namespace's own settings and counters.
type Facts struct {
	Sysctl  hostinfo.Sysctls
	Netstat hostinfo.Netstat
}

// ReadFacts reads the TCP sysctls and counters of the namespace at path,
// from a thread that enters it (and is thrown away after: Go has no
// other way to leave it safely).
func ReadFacts(path string) (Facts, error) {
	f, err := os.Open(path)
	if err != nil {
		return Facts{}, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer f.Close()
	type result struct {
		facts Facts
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, instead of
		// going back to the scheduler inside another namespace.
		runtime.LockOSThread()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: enterError(path, err)}
			return
		}
		var r result
		r.facts.Sysctl, r.err = hostinfo.ReadSysctls(os.DirFS("/proc"))
		// /proc/thread-self/net is this thread's namespace; /proc/net
		// would be the main thread's.
		r.facts.Netstat, _ = hostinfo.ReadNetstat(os.DirFS("/proc/thread-self"))
		if r.err != nil {
			r.err = fmt.Errorf("reading the sysctls of network namespace %s: %w", path, r.err)
		}
		ch <- r
	}()
	r := <-ch
	return r.facts, r.err
}

// OpenDumper opens a sock_diag socket in the namespace at path, for its
// census. The socket keeps the namespace alive: close it once the
// namespace is gone.
func OpenDumper(path string) (*census.Dumper, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer f.Close()
	d, err := census.NewDumperNetNS(int(f.Fd()))
	if err != nil {
		return nil, enterError(path, err)
	}
	return d, nil
}

func enterError(path string, err error) error {
	if errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("entering network namespace %s: %w (needs CAP_SYS_ADMIN: run as root, "+
			"or give the container SYS_ADMIN)", path, err)
	}
	return fmt.Errorf("entering network namespace %s: %w", path, err)
}
