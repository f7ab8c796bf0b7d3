package owner

import (
	"io/fs"
	"maps"
	"os"
	"strconv"
	"syscall"
	"testing"
	"testing/fstest"
	"time"
)

func link(target string) *fstest.MapFile {
	return &fstest.MapFile{Data: []byte(target), Mode: fs.ModeSymlink | 0o777}
}

func proc(fsys fstest.MapFS, pid int, comm, cmdline string, fds map[int]string) {
	dir := strconv.Itoa(pid)
	fsys[dir+"/comm"] = &fstest.MapFile{Data: []byte(comm + "\n")}
	fsys[dir+"/cmdline"] = &fstest.MapFile{Data: []byte(cmdline)}
	fsys[dir+"/fd"] = &fstest.MapFile{Mode: fs.ModeDir | 0o500}
	for fd, target := range fds {
		fsys[dir+"/fd/"+strconv.Itoa(fd)] = link(target)
	}
}

func testProc() fstest.MapFS {
	fsys := fstest.MapFS{
		"self":         link("4242"),
		"thread-self":  link("4242/task/4242"),
		"net/netstat":  &fstest.MapFile{Data: []byte("TcpExt: TW\nTcpExt: 0\n")},
		"sys/kernel/x": &fstest.MapFile{},
	}
	proc(fsys, 1, "systemd", "/sbin/init\x00splash\x00", map[int]string{0: "/dev/null", 3: "socket:[100]"})
	// 900 forked 1000: both hold socket 555. Directory order puts "1000"
	// before "900": Resolve must still report the lower PID.
	proc(fsys, 1000, "nginx", "nginx: worker process\x00\x00\x00  ", map[int]string{4: "socket:[555]", 5: "socket:[556]"})
	proc(fsys, 900, "nginx", "nginx: master process /usr/sbin/nginx\x00", map[int]string{4: "socket:[555]", 7: "socket:[555]"})
	proc(fsys, 4242, "app", "/usr/bin/app\x00--port\x008080\x00", map[int]string{
		0: "/dev/pts/0", 3: "socket:[777]", 4: "pipe:[888]", 5: "anon_inode:[eventpoll]", 6: "socket:[999",
	})
	// A thread of 4242 holds the same fds; it must not count as a holder.
	fsys["4242/task/4243/fd/3"] = link("socket:[777]")
	// A process whose fd directory we may not read.
	fsys["77/comm"] = &fstest.MapFile{Data: []byte("secret\n")}
	// A process that vanished: only its directory entry remains.
	fsys["78/stat"] = &fstest.MapFile{}
	return fsys
}

func TestResolve(t *testing.T) {
	fsys := testProc()
	got, err := ResolveAll(fsys, []uint64{555, 556, 777, 100, 999, 888, 12345})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]Owner{
		100: {Process{1, "systemd", "/sbin/init splash"}, 3, 1},
		555: {Process{900, "nginx", "nginx: master process /usr/sbin/nginx"}, 4, 2},
		556: {Process{1000, "nginx", "nginx: worker process"}, 5, 1},
		777: {Process{4242, "app", "/usr/bin/app --port 8080"}, 3, 1},
	}
	if len(got) != len(want) {
		t.Errorf("got %d owners %v, want %d", len(got), got, len(want))
	}
	for ino, w := range want {
		if g, ok := got[ino]; !ok || g != w {
			t.Errorf("inode %d: got %+v (%v), want %+v", ino, g, ok, w)
		}
	}
}

func TestScanCountsOwnersFDs(t *testing.T) {
	sc, err := ScanFor(testProc(), []uint64{555, 777}, false)
	if err != nil {
		t.Fatal(err)
	}
	// Only owners' fds are counted: 900 owns 555 (two fds), 4242 owns 777
	// (five fds, sockets or not); 1000 only shares 555.
	if want := map[int]int{900: 2, 4242: 5}; !maps.Equal(sc.FDs, want) {
		t.Errorf("FDs = %v, want %v", sc.FDs, want)
	}
	if sc.Scanned != 4 {
		t.Errorf("Scanned = %d, want 4 (77 has no fd directory, 78 is gone)", sc.Scanned)
	}
}

func TestResolveStopsEarly(t *testing.T) {
	fsys := testProc()
	got, err := Resolve(fsys, []uint64{555})
	if err != nil {
		t.Fatal(err)
	}
	// 900 holds it twice (two fds) and is scanned first; the scan stops
	// before 1000, so Holders is the lower bound 1.
	if o := got[555]; o.PID != 900 || o.Holders != 1 {
		t.Fatalf("got %+v, want pid 900 with 1 holder seen", o)
	}
	// Without the lower holder, the next one is found.
	for k := range fsys {
		if len(k) > 4 && k[:4] == "900/" {
			delete(fsys, k)
		}
	}
	got, err = Resolve(fsys, []uint64{555})
	if err != nil {
		t.Fatal(err)
	}
	if o := got[555]; o.PID != 1000 || o.Holders != 1 {
		t.Fatalf("got %+v, want pid 1000", o)
	}
}

// countingFS counts fd directory reads, to show Resolve stops early.
type countingFS struct {
	fstest.MapFS
	fdDirs *int
}

func (c countingFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if len(name) > 3 && name[len(name)-3:] == "/fd" {
		*c.fdDirs++
	}
	return c.MapFS.ReadDir(name)
}

func TestResolveReadsNoMoreThanNeeded(t *testing.T) {
	n := 0
	fsys := countingFS{testProc(), &n}
	if _, err := Resolve(fsys, []uint64{100}); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("Resolve read %d fd directories, want 1 (pid 1 holds the socket)", n)
	}
	n = 0
	if _, err := ResolveAll(fsys, []uint64{100}); err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Errorf("ResolveAll read %d fd directories, want all", n)
	}
}

func TestResolveEmptyAndErrors(t *testing.T) {
	got, err := Resolve(fstest.MapFS{}, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("no inodes: %v, %v", got, err)
	}
	got, err = Resolve(fstest.MapFS{}, []uint64{1})
	if err != nil || len(got) != 0 {
		t.Errorf("empty procfs: %v, %v", got, err)
	}
	if _, err := Resolve(noLinks{}, []uint64{1}); err == nil {
		t.Error("FS without ReadLink accepted")
	}
}

type noLinks struct{}

func (noLinks) Open(string) (fs.File, error) { return nil, fs.ErrNotExist }

func TestParseSocketLink(t *testing.T) {
	good := map[string]uint64{"socket:[1]": 1, "socket:[4294967296]": 1 << 32, "socket:[18446744073709551615]": 1<<64 - 1}
	for in, want := range good {
		if got, ok := ParseSocketLink(in); !ok || got != want {
			t.Errorf("ParseSocketLink(%q) = %d, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "socket:[]", "socket:[12", "socket:12]", "pipe:[12]", "socket:[+1]", "socket:[-1]", "socket:[1a]", "socket:[18446744073709551616]"} {
		if _, ok := ParseSocketLink(in); ok {
			t.Errorf("ParseSocketLink(%q) ok", in)
		}
	}
}

func TestJoinCmdline(t *testing.T) {
	cases := map[string]string{
		"":                             "",
		"\x00":                         "",
		"/bin/sh\x00-c\x00echo hi\x00": "/bin/sh -c echo hi",
		"nginx: worker\x00\x00  ":      "nginx: worker",
		"noterminator":                 "noterminator",
	}
	for in, want := range cases {
		if got := JoinCmdline([]byte(in)); got != want {
			t.Errorf("JoinCmdline(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestResolveLiveSelf resolves a socket this test process holds, on the
// real /proc; it needs no privilege. It also logs how long a full scan of
// this machine's /proc takes.
func TestResolveLiveSelf(t *testing.T) {
	r, w, err := os.Pipe() // not a socket: must not be found
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ino, sockFD, ok := selfSocketInode(t)
	if !ok {
		t.Skip("cannot create a socket here")
	}
	procfs := os.DirFS("/proc")
	start := time.Now()
	got, err := ResolveAll(procfs, []uint64{ino, 1<<64 - 1})
	full := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := got[ino]
	if !ok || o.PID != os.Getpid() || o.Holders != 1 || o.Comm == "" || o.Cmdline == "" {
		t.Fatalf("got %+v (%v), want this process (%d)", o, ok, os.Getpid())
	}
	if len(got) != 1 {
		t.Errorf("unheld inode resolved: %v", got)
	}
	start = time.Now()
	if _, err := Resolve(procfs, []uint64{ino}); err != nil {
		t.Fatal(err)
	}
	early := time.Since(start)

	// The fast reader finds the same, with the fd number and count.
	start = time.Now()
	sc, err := ScanFor(Proc("/proc"), []uint64{ino, 1<<64 - 1}, false)
	fast := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	f := sc.Owners[ino]
	if f.Process != o.Process || f.Holders != 1 || f.FD != sockFD {
		t.Errorf("Proc scan: got %+v, want %+v with fd %d", f, o, sockFD)
	}
	if n := sc.FDs[os.Getpid()]; n < 3 || n != countFDs(t) {
		t.Errorf("Proc scan: %d fds for this process, want %d", n, countFDs(t))
	}
	t.Logf("full /proc scan: %v (os.DirFS), %v (Proc); early-stop scan: %v", full, fast, early)
}

// countFDs counts this process's open fds.
func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory's own fd, open while it was read
}

// selfSocketInode opens a unix socket (closed at test end) and returns its
// inode and fd.
func selfSocketInode(t *testing.T) (uint64, int, bool) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Logf("socket: %v", err)
		return 0, 0, false
	}
	t.Cleanup(func() { syscall.Close(fd) })
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		t.Logf("fstat: %v", err)
		return 0, 0, false
	}
	return st.Ino, fd, true
}

// BenchmarkResolveProc scans this machine's /proc for an inode no process
// holds: the worst case, every fd of every process read.
func BenchmarkResolveProc(b *testing.B) {
	for _, bc := range []struct {
		name   string
		procfs fs.FS
	}{{"DirFS", os.DirFS("/proc")}, {"Proc", Proc("/proc")}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ResolveAll(bc.procfs, []uint64{1<<64 - 1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestFDLimit(t *testing.T) {
	limits := "Limit                     Soft Limit           Hard Limit           Units     \n" +
		"Max cpu time              unlimited            unlimited            seconds   \n" +
		"Max open files            1024                 524288               files     \n" +
		"Max locked memory         8388608              8388608              bytes     \n"
	fsys := fstest.MapFS{"42/limits": {Data: []byte(limits)}}
	if n, err := FDLimit(fsys, 42); err != nil || n != 1024 {
		t.Errorf("FDLimit = %d, %v; want 1024", n, err)
	}
	if _, err := FDLimit(fsys, 43); err == nil {
		t.Error("a missing process has a limit")
	}
	for _, bad := range []string{"", "Max open files\n", "Max open files  unlimited  unlimited  files\n", "Max open files  -1  5  files\n", "Max processes 5 5\n"} {
		if n, err := ParseFDLimit([]byte(bad)); err == nil {
			t.Errorf("ParseFDLimit(%q) = %d, want an error", bad, n)
		}
	}
	// The real file of this process.
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if n, err := FDLimit(os.DirFS("/proc"), os.Getpid()); err != nil || uint64(n) != rl.Cur {
		t.Errorf("FDLimit(self) = %d, %v; want %d", n, err, rl.Cur)
	}
}

func FuzzParseFDLimit(f *testing.F) {
	f.Add([]byte("Max open files            1024                 524288               files\n"))
	f.Add([]byte("Max open files 99999999999999999999999 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := ParseFDLimit(b); err == nil && n <= 0 {
			t.Fatalf("limit %d accepted", n)
		}
	})
}

// TestProcReadsSysctls: Procfs must read /proc files the way os.ReadFile
// does, or a sysctl reads as its first byte.
func TestProcReadsSysctls(t *testing.T) {
	want, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Skip(err)
	}
	got, err := fs.ReadFile(Proc("/proc"), "sys/net/ipv4/ip_local_port_range")
	if err != nil || string(got) != string(want) {
		t.Errorf("read %q, %v; want %q", got, err, want)
	}
}
