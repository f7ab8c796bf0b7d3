module github.com/tcptrace/tcptrace

go 1.26.8

require (
	github.com/cilium/ebpf v0.22.0
	golang.org/x/sys v0.43.0
)

require github.com/mdlayher/netlink v1.11.2 // indirect

tool github.com/cilium/ebpf/cmd/bpf2go
