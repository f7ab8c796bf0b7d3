package census

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/tcptrace/tcptrace/internal/event"
)

// BenchmarkCensus measures the periodic CLOSE_WAIT census in a namespace
// with about 10k ESTABLISHED sockets (5000 loopback connections, both ends)
// and 100 CLOSE_WAIT sockets, against ss(8) doing the same. Needs root.
//
//	go test -run '^$' -bench Census ./internal/census
func BenchmarkCensus(b *testing.B) {
	const established, closeWait = 5000, 100
	ns := newTestNetns(b)
	d, err := NewDumperNetNS(ns.fd)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	cw := Mask(event.CloseWait)

	// The kernel walks the whole established hash table (shared by all
	// namespaces, sized at boot) once per family, even when it is empty.
	b.Run("Dumper/CLOSE_WAIT/empty-netns", func(b *testing.B) {
		b.ReportAllocs()
		var buf []Socket
		for b.Loop() {
			if buf, err = d.AppendDump(buf[:0], cw); err != nil || len(buf) != 0 {
				b.Fatalf("got %d sockets, %v", len(buf), err)
			}
		}
	})

	ln := listen(b, ns, "tcp4", "127.0.0.1:0")
	connect(b, ns, ln, established)
	for _, p := range connect(b, ns, ln, closeWait) {
		p.client.Close()
	}
	waitDump(b, d, Mask(event.CloseWait), closeWait)
	waitDump(b, d, Mask(event.Established), 2*established)

	b.Run("Dumper/CLOSE_WAIT/ipv4-only", func(b *testing.B) {
		b.ReportAllocs()
		var buf []Socket
		for b.Loop() {
			if buf, err = d.AppendDumpFamily(buf[:0], event.IPv4, cw); err != nil || len(buf) != closeWait {
				b.Fatalf("got %d sockets, %v", len(buf), err)
			}
		}
	})
	b.Run("Dumper/CLOSE_WAIT", func(b *testing.B) {
		b.ReportAllocs()
		var buf []Socket
		for b.Loop() {
			if buf, err = d.AppendDump(buf[:0], cw); err != nil || len(buf) != closeWait {
				b.Fatalf("got %d sockets, %v", len(buf), err)
			}
		}
	})
	b.Run("Dump/CLOSE_WAIT", func(b *testing.B) {
		// The one-shot Dump: a new netlink socket per call.
		leave, err := ns.enter()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		var n int
		for b.Loop() {
			got, err := Dump(cw)
			if err != nil {
				b.Error(err)
				break
			}
			n = len(got)
		}
		if err := leave(); err != nil {
			b.Fatal(err)
		}
		if n != closeWait {
			b.Fatalf("got %d sockets", n)
		}
	})
	b.Run("NewDumperNetNS+Dump+Close/CLOSE_WAIT", func(b *testing.B) {
		// The same through a namespace fd: socket creation then setns()es a
		// helper thread there and back.
		b.ReportAllocs()
		for b.Loop() {
			d, err := NewDumperNetNS(ns.fd)
			if err != nil {
				b.Fatal(err)
			}
			got, err := d.Dump(cw)
			d.Close()
			if err != nil || len(got) != closeWait {
				b.Fatalf("got %d sockets, %v", len(got), err)
			}
		}
	})
	b.Run("Dumper/all", func(b *testing.B) {
		b.ReportAllocs()
		var buf []Socket
		for b.Loop() {
			if buf, err = d.AppendDump(buf[:0], AllStates); err != nil || len(buf) < 2*established+closeWait {
				b.Fatalf("got %d sockets, %v", len(buf), err)
			}
		}
	})
	ss := func(args ...string) func(b *testing.B) {
		return func(b *testing.B) {
			if _, err := exec.LookPath("ss"); err != nil {
				b.Skip("no ss")
			}
			args = append([]string{"-N", ns.name, "-H"}, args...)
			for b.Loop() {
				out, err := exec.Command("ss", args...).Output()
				if err != nil {
					b.Fatalf("ss %v: %v", args, err)
				}
				if n := bytes.Count(out, []byte("\n")); n < closeWait {
					b.Fatalf("ss %v: %d lines", args, n)
				}
			}
		}
	}
	b.Run("ss/state-close-wait", ss("-tan", "state", "close-wait"))
	b.Run("ss/all", ss("-tan"))
}
