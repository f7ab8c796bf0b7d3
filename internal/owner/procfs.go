package owner

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Procfs is a procfs mount (normally /proc) for Resolve and ScanFor. It is
// an fs.FS like os.DirFS(root), and reads each process's fd links with
// getdents64(2) and readlinkat(2) into reused buffers: a process holding
// 100,000 sockets costs 100,000 readlinks, and through os.DirFS each one
// also builds a path and a string.
type Procfs struct {
	fs.FS
	mu   sync.Mutex // guards the scratch buffers
	root string
	self int // this process's PID: its scan must not count its own dfd
	// dirents and link are scratch buffers reused across processes (one
	// process's fds are read at a time, under mu).
	dirents, link []byte
}

// Proc returns the procfs mounted at root ("/proc").
func Proc(root string) *Procfs {
	return &Procfs{FS: os.DirFS(root), root: root, self: os.Getpid(), dirents: make([]byte, 32<<10), link: make([]byte, 256)}
}

// ReadFile reads a whole file (fs.ReadFileFS) in as few reads as
// os.ReadFile does. It matters: fs.ReadFile on a plain fs.FS reads a
// /proc file whose size shows as 0 one byte first, and a sysctl file
// returns nothing to a read that does not start at offset 0, so
// "1000" would read as "1".
func (p *Procfs) ReadFile(name string) ([]byte, error) { return fs.ReadFile(p.FS, name) }

// ReadLink reads a symbolic link (fs.ReadLinkFS).
func (p *Procfs) ReadLink(name string) (string, error) { return fs.ReadLink(p.FS, name) }

// Lstat describes a file without following a link (fs.ReadLinkFS).
func (p *Procfs) Lstat(name string) (fs.FileInfo, error) { return fs.Lstat(p.FS, name) }

func (p *Procfs) readFDs(pid int, fn func(fd int, target []byte)) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir := p.root + "/" + strconv.Itoa(pid) + "/fd"
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dfd)
	n := 0
	for {
		got, err := unix.Getdents(dfd, p.dirents)
		if err != nil {
			return n, &fs.PathError{Op: "getdents", Path: dir, Err: err}
		}
		if got <= 0 {
			return n, nil
		}
		// struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type,
		// then the NUL-terminated name.
		for b := p.dirents[:got]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			if reclen < 19 || reclen > len(b) {
				return n, fmt.Errorf("getdents %s: bad record length %d", dir, reclen)
			}
			name := b[19:reclen]
			b = b[reclen:]
			end := bytes.IndexByte(name, 0)
			if end <= 0 || name[0] < '0' || name[0] > '9' {
				continue // ".", ".."
			}
			fd, ok := atoi(name[:end])
			if !ok || (pid == p.self && fd == dfd) {
				continue
			}
			n++
			m, err := readlinkat(dfd, &name[0], p.link)
			if err != nil {
				continue // closed meanwhile
			}
			fn(fd, p.link[:m])
		}
	}
}

// readlinkat is readlinkat(2) on a NUL-terminated name already in memory,
// which unix.Readlinkat would copy into a new string first.
func readlinkat(dirfd int, name *byte, buf []byte) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(name)),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func atoi(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' || n > 1<<40 {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(b) > 0
}
