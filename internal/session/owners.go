package session

import (
	"cmp"
	"io/fs"
	"maps"
	"slices"

	"github.com/tcptrace/tcptrace/internal/owner"
	"github.com/tcptrace/tcptrace/internal/report"
)

// maxLimitReads bounds the /proc/PID/limits files read per owner scan:
// the processes holding the most of the wanted sockets come first, and a
// host with more leaking processes than this has bigger news than their
// fd limits.
const maxLimitReads = 64

// resolveOwners names the processes holding the sockets with these
// inodes, with each one's fd number, the owner's open fds and (for the
// maxLimitReads owners holding the most) its RLIMIT_NOFILE. It also says
// how many processes it could not read. Only /proc entries of processes
// scanned until every inode was found are read: fds are counted for the
// owners only, from the directory listing the scan reads anyway.
func resolveOwners(procfs fs.FS, inodes []uint64) (map[uint64]report.Owner, int) {
	out := map[uint64]report.Owner{}
	if len(inodes) == 0 {
		return out, 0
	}
	sc, err := owner.ScanFor(procfs, inodes, true)
	if err != nil {
		return out, 0
	}
	held := map[int]int{}
	for _, o := range sc.Owners {
		held[o.PID]++
	}
	pids := slices.Collect(maps.Keys(held))
	slices.SortFunc(pids, func(a, b int) int { return cmp.Or(cmp.Compare(held[b], held[a]), cmp.Compare(a, b)) })
	limits := map[int]int{}
	for _, pid := range pids[:min(len(pids), maxLimitReads)] {
		if n, err := owner.FDLimit(procfs, pid); err == nil {
			limits[pid] = n
		}
	}
	for ino, o := range sc.Owners {
		out[ino] = report.Owner{PID: o.PID, Comm: o.Comm, Cmdline: o.Cmdline, Holders: o.Holders, FD: o.FD,
			FDs: sc.FDs[o.PID], FDLimit: limits[o.PID]}
	}
	return out, sc.Unreadable
}
