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
	// Holders is how many processes were found holding the socket. From
	// ResolveAll it is exact (as of the scan); from Resolve, which stops as
	// soon as every inode has a holder, it is a lower bound.
	Holders int
}

// Resolve finds, for each wanted socket inode, the lowest-PID process that
// holds a file descriptor for it. It scans processes in ascending PID order
// and stops as soon as every inode has been found, so Owner.Holders is only
// a lower bound (use ResolveAll for an exact count). Inodes no process
// holds are absent from the result. Processes that vanish during the scan,
// or whose fds this process may not read, are skipped; only failing to list
// procfs itself is an error.
func Resolve(procfs fs.FS, inodes []uint64) (map[uint64]Owner, error) {
	return scan(procfs, inodes, true)
}

// ResolveAll is Resolve without the early stop: it reads every process's
// fds, so Owner.Holders counts all processes sharing each socket (after a
// fork, or when an fd was passed over a unix socket).
func ResolveAll(procfs fs.FS, inodes []uint64) (map[uint64]Owner, error) {
	return scan(procfs, inodes, false)
}

func scan(procfs fs.FS, inodes []uint64, stopEarly bool) (map[uint64]Owner, error) {
	out := make(map[uint64]Owner, len(inodes))
	if len(inodes) == 0 {
		return out, nil
	}
	want := make(map[uint64]bool, len(inodes))
	for _, ino := range inodes {
		want[ino] = true
	}
	if _, ok := procfs.(fs.ReadLinkFS); !ok {
		return nil, fmt.Errorf("resolve socket owners: %T cannot read symlinks (needs fs.ReadLinkFS)", procfs)
	}
	pids, err := listPIDs(procfs)
	if err != nil {
		return nil, fmt.Errorf("resolve socket owners: %w", err)
	}
	for _, pid := range pids {
		dir := strconv.Itoa(pid)
		fds, err := fs.ReadDir(procfs, dir+"/fd")
		if err != nil {
			continue // gone, a zombie, or not ours to read
		}
		var seen map[uint64]bool // inodes this process holds, counted once each
		for _, fd := range fds {
			target, err := fs.ReadLink(procfs, dir+"/fd/"+fd.Name())
			if err != nil {
				continue // fd closed meanwhile
			}
			ino, ok := ParseSocketLink(target)
			if !ok || !want[ino] || seen[ino] {
				continue
			}
			if seen == nil {
				seen = make(map[uint64]bool)
			}
			seen[ino] = true
			o, found := out[ino]
			if !found {
				o.Process = readProcess(procfs, pid)
			}
			o.Holders++
			out[ino] = o
		}
		if stopEarly && len(out) == len(want) {
			break
		}
	}
	return out, nil
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
	rest, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(rest, "]")
	if !ok || num == "" || num[0] == '+' {
		return 0, false
	}
	ino, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, false
	}
	return ino, true
}
