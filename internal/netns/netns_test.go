package netns

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tcptrace/tcptrace/internal/census"
	"github.com/tcptrace/tcptrace/internal/event"
	"github.com/tcptrace/tcptrace/internal/testutil/testnet"
)

const id64 = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"

func TestParseCgroup(t *testing.T) {
	for _, c := range []struct{ name, in, id, pod, rt string }{
		{"host v2", "0::/user.slice/user-1000.slice/session-2.scope\n", "", "", ""},
		{"host v1", "12:memory:/\n11:cpu,cpuacct:/system.slice/sshd.service\n", "", "", ""},
		{"docker cgroupfs v1", "12:memory:/docker/" + id64 + "\n0::/\n", id64, "", "docker"},
		{"docker systemd v2", "0::/system.slice/docker-" + id64 + ".scope\n", id64, "", "docker"},
		{"podman nested", "0::/machine.slice/libpod-" + id64 + ".scope/container\n", id64, "", "podman"},
		{"podman scope", "0::/machine.slice/libpod-" + id64 + ".scope\n", id64, "", "podman"},
		{"k8s containerd systemd", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b6f5b9e_7c1d_4e2f_9a3b_5c6d7e8f9012.slice/cri-containerd-" + id64 + ".scope\n",
			id64, "0b6f5b9e-7c1d-4e2f-9a3b-5c6d7e8f9012", "containerd"},
		{"k8s cri-o", "0::/kubepods.slice/kubepods-pod0b6f5b9e_7c1d_4e2f_9a3b_5c6d7e8f9012.slice/crio-" + id64 + ".scope\n",
			id64, "0b6f5b9e-7c1d-4e2f-9a3b-5c6d7e8f9012", "cri-o"},
		{"k8s cgroupfs v1", "4:pids:/kubepods/besteffort/pod0b6f5b9e-7c1d-4e2f-9a3b-5c6d7e8f9012/" + id64 + "\n",
			id64, "0b6f5b9e-7c1d-4e2f-9a3b-5c6d7e8f9012", "kubepods"},
		{"k8s pod slice only", "0::/kubepods.slice/kubepods-pod0b6f5b9e_7c1d_4e2f_9a3b_5c6d7e8f9012.slice\n",
			"", "0b6f5b9e-7c1d-4e2f-9a3b-5c6d7e8f9012", "kubepods"},
		{"garbage", "not a cgroup file\x00\xff", "", "", ""},
		{"empty", "", "", "", ""},
	} {
		id, pod, rt := ParseCgroup([]byte(c.in))
		if id != c.id || pod != c.pod || rt != c.rt {
			t.Errorf("%s: got (%q, %q, %q), want (%q, %q, %q)", c.name, id, pod, rt, c.id, c.pod, c.rt)
		}
	}
}

func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte("0::/system.slice/docker-" + id64 + ".scope\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, pod, _ := ParseCgroup(b)
		if id != "" && len(id) != 64 || pod != "" && len(pod) != 36 {
			t.Fatalf("id %q pod %q", id, pod)
		}
	})
}

// Two namespaces with different sysctls: Scan finds both (one through a
// process in it, one through its name only), and ReadFacts reads each
// one's own values, not tcptrace's.
func TestScanAndFacts(t *testing.T) {
	a, b := testnet.New(t), testnet.New(t)
	a.Sysctl(t, "net.ipv4.tcp_fin_timeout", "17")
	b.Sysctl(t, "net.ipv4.tcp_fin_timeout", "23")
	// A process in a, so that a is also found through /proc.
	sleeper := a.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		ino, err := inode("/proc/" + strconv.Itoa(sleeper.Process.Pid) + "/ns/net")
		if err == nil && ino == a.Inode() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep never entered namespace %s", a.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	found, err := Scan("/proc", "/run/netns")
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32]Namespace{}
	for _, n := range found {
		got[n.Inode] = n
	}
	na, nb := got[a.Inode()], got[b.Inode()]
	if na.Identity.Name != a.Name || na.Identity.PID == 0 || nb.Identity.Name != b.Name || nb.Path != "/run/netns/"+b.Name {
		t.Fatalf("scan: a %+v, b %+v", na, nb)
	}
	own, err := Own()
	if err != nil || got[own].Path == "" {
		t.Errorf("own namespace %d not found (%v)", own, err)
	}
	for _, c := range []struct {
		n    Namespace
		want string
	}{{na, "17"}, {nb, "23"}} {
		f, err := ReadFacts(c.n.Path)
		if err != nil {
			t.Fatal(err)
		}
		if v := f.Sysctl["net.ipv4.tcp_fin_timeout"]; v != c.want {
			t.Errorf("%s: tcp_fin_timeout %q, want %q", c.n.Path, v, c.want)
		}
		if len(f.Netstat) == 0 {
			t.Errorf("%s: no netstat counters", c.n.Path)
		}
	}
	// The thread that entered a namespace is gone: tcptrace's own
	// sysctls still read as its own.
	mine, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_fin_timeout")
	if v := string(mine); v == "17\n" || v == "23\n" {
		t.Errorf("tcptrace's own tcp_fin_timeout now reads %q", v)
	}

	// The census of b sees b's socket, not a's.
	d, err := OpenDumper(nb.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var ln interface{ Close() error }
	b.Do(t, func() error {
		l, err := listenTCP("127.0.0.1:4567")
		ln = l
		return err
	})
	defer ln.Close()
	socks, err := d.Dump(census.Mask(event.Listen))
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 1 || socks[0].Local.Port() != 4567 {
		t.Errorf("census of %s: %+v, want the one listener on 4567", b.Name, socks)
	}
}
