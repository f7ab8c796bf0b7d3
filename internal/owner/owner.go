// Package owner finds which process holds a socket, given the socket's
// inode (from sock_diag), by reading the fd links under /proc as ss -p
// does: /proc/PID/fd/N -> "socket:[INODE]".
//
// It reads through an fs.FS rooted at /proc, which must implement
// fs.ReadLinkFS (os.DirFS does since Go 1.25; so does fstest.MapFS), and
// keeps no state. Only thread-group leaders are scanned (the numeric
// entries of /proc; /proc/PID/task is not entered): threads share their
// leader's fd table.
package owner

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// Process identifies a process.
type Process struct {
	// PID is the thread-group id.
	PID int
	// Comm is the command name (/proc/PID/comm), at most 15 bytes.
	Comm string
	// Cmdline is the NUL-separated arguments of /proc/PID/cmdline joined
	// by spaces and trimmed; empty for kernel threads and zombies.
	Cmdline string
}

// Owner is the process that holds a socket.
type Owner struct {
	// Process is the holder with the lowest PID (after a fork, usually the
	// parent).
	Process
	// FD is the file descriptor number by which Process holds the socket
	// (its lowest, if it holds it more than once).
	FD int
	// Holders is how many processes were found holding the socket. From
	// ResolveAll it is exact (as of the scan); from Resolve, which stops as
	// soon as every inode has a holder, it is a lower bound.
	Holders int
}

// Scan is what one pass over /proc found.
type Scan struct {
	// Owners maps each wanted inode that some process holds to its owner.
	Owners map[uint64]Owner
	// FDs is how many file descriptors each owner process had open at
	// the scan (every one, sockets or not), by PID.
	FDs map[int]int
	// Unreadable counts the processes whose fds this process may not read
	// (another user's, without CAP_SYS_PTRACE or root): the sockets they
	// hold cannot be attributed.
	Unreadable int
	// Scanned counts the processes whose fds were read.
	Scanned int
}

// Resolve finds, for each wanted socket inode, the lowest-PID process that
// holds a file descriptor for it. It scans processes in ascending PID order
// and stops as soon as every inode has been found, so Owner.Holders is only
// a lower bound (use ResolveAll for an exact count). Inodes no process
// holds are absent from the result. Processes that vanish during the scan,
// or whose fds this process may not read, are skipped; only failing to list
// procfs itself is an error.
func Resolve(procfs fs.FS, inodes []uint64) (map[uint64]Owner, error) {
	sc, err := ScanFor(procfs, inodes, true)
	if err != nil {
		return nil, err
	}
	return sc.Owners, nil
}

// ResolveAll is Resolve without the early stop: it reads every process's
// fds, so Owner.Holders counts all processes sharing each socket (after a
// fork, or when an fd was passed over a unix socket).
func ResolveAll(procfs fs.FS, inodes []uint64) (map[uint64]Owner, error) {
	sc, err := ScanFor(procfs, inodes, false)
	if err != nil {
		return nil, err
	}
	return sc.Owners, nil
}

// ScanFor is Resolve (stopEarly) or ResolveAll with everything the scan
// learnt on the way: the owners' open fd counts, and how many processes it
// could not read. procfs from Proc reads fds several times faster than a
// plain fs.FS.
func ScanFor(procfs fs.FS, inodes []uint64, stopEarly bool) (*Scan, error) {
	sc := &Scan{Owners: make(map[uint64]Owner, len(inodes)), FDs: map[int]int{}}
	if len(inodes) == 0 {
		return sc, nil
	}
	want := make(map[uint64]bool, len(inodes))
	for _, ino := range inodes {
		want[ino] = true
	}
	fdr, fast := procfs.(fdReader)
	if !fast {
		if _, ok := procfs.(fs.ReadLinkFS); !ok {
			return nil, fmt.Errorf("resolve socket owners: %T cannot read symlinks (needs fs.ReadLinkFS)", procfs)
		}
		fdr = genericFDs{procfs}
	}
	pids, err := listPIDs(procfs)
	if err != nil {
		return nil, fmt.Errorf("resolve socket owners: %w", err)
	}
	var seen map[uint64]bool // inodes this process holds, counted once each
	for _, pid := range pids {
		clear(seen)
		owns := false
		var proc *Process // read once, for the first inode it owns
		n, err := fdr.readFDs(pid, func(fd int, target []byte) {
			ino, ok := parseSocketLink(target)
			if !ok || !want[ino] {
				return
			}
			if seen[ino] {
				if o := sc.Owners[ino]; o.PID == pid && fd < o.FD {
					o.FD = fd // directory order is not numeric order
					sc.Owners[ino] = o
				}
				return
			}
			if seen == nil {
				seen = make(map[uint64]bool)
			}
			seen[ino] = true
			o, found := sc.Owners[ino]
			if !found {
				if proc == nil {
					p := readProcess(procfs, pid)
					proc = &p
				}
				o.Process = *proc
				o.FD = fd
				owns = true
			}
			o.Holders++
			sc.Owners[ino] = o
		})
		switch {
		case errors.Is(err, fs.ErrPermission):
			sc.Unreadable++
			continue
		case err != nil:
			continue // gone, or a zombie
		}
		sc.Scanned++
		if owns {
			sc.FDs[pid] = n
		}
		if stopEarly && len(sc.Owners) == len(want) {
			break
		}
	}
	return sc, nil
}

// fdReader reads the fd links of one process: it calls fn for each fd
// with the link's target (valid only during the call) and returns how many
// fds there were.
type fdReader interface {
	readFDs(pid int, fn func(fd int, target []byte)) (int, error)
}

// genericFDs reads fds through any fs.ReadLinkFS (tests use fstest.MapFS).
type genericFDs struct{ fsys fs.FS }

func (g genericFDs) readFDs(pid int, fn func(fd int, target []byte)) (int, error) {
	dir := strconv.Itoa(pid) + "/fd"
	fds, err := fs.ReadDir(g.fsys, dir)
	if err != nil {
		return 0, err
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := fs.ReadLink(g.fsys, dir+"/"+e.Name())
		if err != nil {
			continue // fd closed meanwhile
		}
		fn(fd, []byte(target))
	}
	return len(fds), nil
}

// listPIDs returns the numeric entries of procfs's root, ascending.
func listPIDs(procfs fs.FS) ([]int, error) {
	f, err := procfs.Open(".")
	if err != nil {
		return nil, fmt.Errorf("open procfs: %w", err)
	}
	defer f.Close()
	d, ok := f.(fs.ReadDirFile)
	if !ok {
		return nil, errors.New("procfs root is not a directory")
	}
	var pids []int
	for {
		// Batches in directory order (fs.ReadDir would sort by name); the
		// PIDs are sorted numerically below.
		ents, err := d.ReadDir(512)
		for _, e := range ents {
			name := e.Name()
			if name == "" || name[0] < '1' || name[0] > '9' {
				continue
			}
			if pid, err := strconv.Atoi(name); err == nil && pid > 0 {
				pids = append(pids, pid)
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && len(ents) == 0) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list procfs: %w", err)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// readProcess reads comm and cmdline; a process that is gone by now keeps
// its PID with empty names.
func readProcess(procfs fs.FS, pid int) Process {
	dir := strconv.Itoa(pid)
	p := Process{PID: pid}
	if b, err := fs.ReadFile(procfs, dir+"/comm"); err == nil {
		p.Comm = strings.TrimRight(string(b), "\n")
	}
	if b, err := fs.ReadFile(procfs, dir+"/cmdline"); err == nil {
		p.Cmdline = JoinCmdline(b)
	}
	return p
}

// JoinCmdline turns the contents of /proc/PID/cmdline (arguments each
// ended by NUL) into one line: non-empty arguments joined by single spaces,
// the result trimmed of surrounding white space. Processes that rewrite
// their argv (nginx, postgres) leave padding that this removes.
func JoinCmdline(b []byte) string {
	args := strings.Split(string(b), "\x00")
	out := args[:0]
	for _, a := range args {
		if a != "" {
			out = append(out, a)
		}
	}
	return strings.TrimSpace(strings.Join(out, " "))
}

// ParseSocketLink returns the inode of an fd link target "socket:[INODE]",
// and false for any other target.
func ParseSocketLink(target string) (uint64, bool) {
	return parseSocketLink([]byte(target))
}

// parseSocketLink is ParseSocketLink on bytes, without allocating: it runs
// for every fd of every process scanned.
func parseSocketLink(b []byte) (uint64, bool) {
	const prefix = "socket:["
	if len(b) < len(prefix)+2 || string(b[:len(prefix)]) != prefix || b[len(b)-1] != ']' {
		return 0, false
	}
	var ino uint64
	for _, c := range b[len(prefix) : len(b)-1] {
		d := uint64(c - '0')
		if c < '0' || c > '9' || ino > (1<<64-1-d)/10 {
			return 0, false
		}
		ino = ino*10 + d
	}
	return ino, true
}

// FDLimit returns a process's RLIMIT_NOFILE soft limit, from
// /proc/PID/limits ("Max open files  1024  524288  files"): past it,
// accept(), connect(), socket() and open() fail with EMFILE. Reading
// another user's limits needs no privilege. It fails when the process is
// gone or the file has no such line; "unlimited" (which the kernel does
// not allow for this limit) is an error too.
func FDLimit(procfs fs.FS, pid int) (int, error) {
	b, err := fs.ReadFile(procfs, strconv.Itoa(pid)+"/limits")
	if err != nil {
		return 0, fmt.Errorf("reading the fd limit of pid %d: %w", pid, err)
	}
	return ParseFDLimit(b)
}

// ParseFDLimit reads the soft "Max open files" limit out of the contents
// of /proc/PID/limits.
func ParseFDLimit(b []byte) (int, error) {
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			break
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("parse /proc/PID/limits: soft open files limit %q", f[0])
		}
		return n, nil
	}
	return 0, errors.New("parse /proc/PID/limits: no \"Max open files\" line")
}
