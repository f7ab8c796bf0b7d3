package census

// This file sorts first, so its test runs before any other dump has made
// the kernel load the diag modules.

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// TestDumpLoadsDiagModules checks, on a kernel that builds tcp_diag as a
// module not yet loaded, that a dump which finds it missing loads it, and
// that when it cannot, the error names the module. It changes the global
// kernel.modprobe setting for a moment, to stop the kernel's own
// autoload: only in the test VMs of scripts/test-kernels.sh
// (TCPTRACE_TEST_VM=1).
func TestDumpLoadsDiagModules(t *testing.T) {
	requireRoot(t)
	if os.Getenv("TCPTRACE_TEST_VM") != "1" {
		t.Skip("changes kernel.modprobe: runs only in the VMs of scripts/test-kernels.sh")
	}
	if _, err := os.Stat("/sys/module/tcp_diag"); err == nil {
		t.Skip("tcp_diag is built in or already loaded")
	}
	const knob = "/proc/sys/kernel/modprobe"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Skipf("this kernel loads no modules: %v", err)
	}
	// An empty path stops the kernel's autoload (request_module fails).
	if err := os.WriteFile(knob, []byte("\n"), 0); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := os.WriteFile(knob, old, 0); err != nil {
			t.Errorf("restoring %s: %v", knob, err)
		}
	}()

	load := loadDiagModules
	defer func() { loadDiagModules = load }()
	loadDiagModules = func() error { return errors.New("no modprobe found") }
	d, err := NewDumper()
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Dump(AllStates)
	d.Close()
	if !errors.Is(err, ErrNoTCPDiag) || !strings.Contains(err.Error(), "modprobe tcp_diag") {
		t.Fatalf("dump without the module and without modprobe: %v; want ErrNoTCPDiag naming `modprobe tcp_diag`", err)
	}

	loadDiagModules = load
	d, err = NewDumper()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Dump(AllStates); err != nil {
		t.Fatalf("dump that may load the module: %v", err)
	}
	if _, err := os.Stat("/sys/module/tcp_diag"); err != nil {
		t.Errorf("tcp_diag not loaded after the dump: %v", err)
	}
}
