package probe

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// kernelBTF builds the BTF of a pretend kernel that has the given
// tracepoint typedefs and functions.
func kernelBTF(t *testing.T, typedefs, funcs []string) *btf.Spec {
	t.Helper()
	b, err := btf.NewBuilder(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	i := &btf.Int{Name: "int", Size: 4}
	for _, name := range typedefs {
		if _, err := b.Add(&btf.Typedef{Name: name, Type: i}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range funcs {
		if _, err := b.Add(&btf.Func{Name: name, Type: &btf.FuncProto{Return: i}, Linkage: btf.GlobalFunc}); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// TestKernelFeatures checks that a kernel below the floor is told what it
// lacks, and which hooks each kernel gets.
func TestKernelFeatures(t *testing.T) {
	const tp, storage = "btf_trace_inet_sock_set_state", "bpf_sk_storage_get_tracing"
	for _, tc := range []struct {
		name            string
		typedefs, funcs []string
		want            string
	}{
		{"5.4: no BTF-typed tracepoint", nil, nil, "BTF-typed sock:inet_sock_set_state tracepoint (Linux 5.5)"},
		{"5.10: no socket storage for tracing", []string{tp}, nil, "socket storage for BPF tracing programs (Linux 5.11)"},
		{"5.11+", []string{tp}, []string{storage}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := kernelFeatures(kernelBTF(t, tc.typedefs, tc.funcs))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "needs Linux 5.11")):
				t.Errorf("error %v, want one naming %q and the floor", err, tc.want)
			}
		})
	}

	names := func(hs []hook) string {
		var s []string
		for _, h := range hs {
			s = append(s, h.name+"@"+h.target)
		}
		return strings.Join(s, " ")
	}
	common := []string{"__inet_twsk_schedule", "tw_timer_handler", "inet_twsk_kill"}
	hs, err := fentryHooksFor(kernelBTF(t, nil, common))
	if want := "tw_schedule@__inet_twsk_schedule tw_timer@tw_timer_handler tw_kill@inet_twsk_kill"; err != nil || names(hs) != want {
		t.Errorf("before 6.11: hooks %q, %v; want %q", names(hs), err, want)
	}
	hs, err = fentryHooksFor(kernelBTF(t, nil, append(common, "inet_twsk_hashdance_schedule")))
	if want := "tw_hashdance@inet_twsk_hashdance_schedule tw_rearm@__inet_twsk_schedule tw_timer@tw_timer_handler tw_kill@inet_twsk_kill"; err != nil || names(hs) != want {
		t.Errorf("6.11+: hooks %q, %v; want %q", names(hs), err, want)
	}
	if _, err := fentryHooksFor(kernelBTF(t, nil, common[:2])); err == nil || !strings.Contains(err.Error(), "inet_twsk_kill") {
		t.Errorf("a kernel whose inet_twsk_kill was inlined: %v, want an error naming it", err)
	}
}
