module github.com/tcptrace/tcptrace

go 1.26.8

require (
	github.com/cilium/ebpf v0.22.0
	github.com/mdlayher/netlink v1.11.2
	github.com/spf13/pflag v1.0.10
	golang.org/x/sys v0.43.0
)

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/mdlayher/socket v0.6.0 // indirect
	golang.org/x/net v0.53.0 // indirect
	golang.org/x/sync v0.20.0 // indirect
)

tool github.com/cilium/ebpf/cmd/bpf2go
