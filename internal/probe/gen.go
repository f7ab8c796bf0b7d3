package probe

// The BPF objects are generated and committed, so `go build` needs no
// clang. `make generate` reruns these with the pinned clang-19 and must
// reproduce the committed files byte for byte.
//
// sockstate owns the ABI types (-type); the others share its maps.
// sockstate and tracepoints are built twice: as they are, reading fields
// beyond what a program is handed through bpf_rdonly_cast (Linux 6.2+),
// and with -DTT_PROBE_READ (the ...ProbeRead objects), through CO-RE
// probe reads for older kernels. fentry needs neither.
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I../../bpf" -type tt_event -type tt_addr6 -type tt_comm -type tt_kind -type tt_flags -type tt_ext sockstate ../../bpf/sockstate.bpf.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I../../bpf -DTT_PROBE_READ" -no-global-types sockstateProbeRead ../../bpf/sockstate.bpf.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I../../bpf" -no-global-types tracepoints ../../bpf/tracepoints.bpf.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I../../bpf -DTT_PROBE_READ" -no-global-types tracepointsProbeRead ../../bpf/tracepoints.bpf.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I../../bpf" -no-global-types fentry ../../bpf/fentry.bpf.c
