package census

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcptrace/tcptrace/internal/event"
)

// sockDiagByFamily is SOCK_DIAG_BY_FAMILY, the request and reply type.
const sockDiagByFamily = 20

// reqLen is the size of struct inet_diag_req_v2.
const reqLen = 56

// recvBufSize is the receive buffer for each datagram. The kernel sizes the
// datagrams of a dump by the largest buffer the socket has received with
// (up to 32 KiB); a large buffer means fewer, fuller rounds of the dump.
const recvBufSize = 32 << 10

// extInfo is the idiag_ext bit asking for INET_DIAG_INFO (struct
// tcp_info): bit INET_DIAG_INFO-1.
const extInfo = 1 << (attrInfo - 1)

// Query says what a dump asks the kernel for.
type Query struct {
	// States selects sockets by state (a mini-socket by its substate).
	States StateMask
	// Family limits the dump to event.IPv4 or event.IPv6; 0 asks for
	// both. Each family costs the kernel a walk of the whole established
	// hash table, so a host known to have no IPv6 sockets can halve the
	// cost. Dual-stack sockets talking to IPv4 peers are IPv6 sockets:
	// they are not in an IPv4 dump.
	Family event.Family
	// Info asks for each full socket's tcp_info (Socket.Info), which the
	// kernel fills under the socket's lock: about 250 more bytes per
	// socket to copy and parse.
	Info bool
}

// BuildRequest returns the inet_diag_req_v2 payload asking for every TCP
// socket of family (AF_INET or AF_INET6) whose state is in mask, with
// tcp_info if info: the kernel filters by state and sends back
// inet_diag_msg records and the attributes asked for (and a few it always
// adds).
//
//	0 u8 sdiag_family, u8 sdiag_protocol, u8 idiag_ext, u8 pad
//	4 u32 idiag_states
//	8 struct inet_diag_sockid (48 bytes, zero: no address filter)
func BuildRequest(family uint8, mask StateMask, info bool) []byte {
	b := make([]byte, reqLen)
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	if info {
		b[2] = extInfo
	}
	binary.NativeEndian.PutUint32(b[4:], uint32(mask))
	return b
}

// Dumper holds a NETLINK_SOCK_DIAG socket for repeated dumps. The socket
// belongs to the network namespace of the thread that created it (or the
// one named at creation), and keeps querying that namespace whichever
// thread later uses it. A Dumper is safe for concurrent use; dumps are
// serialized.
type Dumper struct {
	mu   sync.Mutex
	conn *netlink.Conn
	// loadTried: the diag modules were missing once and loading them was
	// tried (once per Dumper).
	loadTried bool
}

// ErrNoTCPDiag means the kernel has no sock_diag handler for TCP sockets:
// its inet_diag and tcp_diag modules are not loaded, and loading them
// failed.
var ErrNoTCPDiag = errors.New("the kernel has no TCP socket diagnostics (sock_diag): the modules inet_diag and tcp_diag are not loaded")

// loadDiagModules loads tcp_diag, and inet_diag with it, as the kernel
// itself does on the first dump where it can run modprobe (a minimal VM
// or a kernel whose modprobe path is unset cannot). A variable, so tests
// can make it fail.
var loadDiagModules = func() error {
	path, err := exec.LookPath("modprobe")
	if err != nil {
		for _, p := range []string{"/usr/sbin/modprobe", "/sbin/modprobe"} {
			if path, err = exec.LookPath(p); err == nil {
				break
			}
		}
	}
	if err != nil {
		return errors.New("no modprobe found")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, path, "tcp_diag").CombinedOutput(); err != nil {
		return fmt.Errorf("modprobe tcp_diag: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NewDumper opens a sock_diag socket in the calling thread's network
// namespace.
func NewDumper() (*Dumper, error) {
	return newDumper(0)
}

// NewDumperNetNS opens a sock_diag socket in the network namespace that the
// file descriptor netnsFD refers to (an open /run/netns/NAME or
// /proc/PID/ns/net). The calling thread's namespace is left unchanged.
func NewDumperNetNS(netnsFD int) (*Dumper, error) {
	if netnsFD <= 0 {
		return nil, fmt.Errorf("open sock_diag socket: invalid netns fd %d", netnsFD)
	}
	return newDumper(netnsFD)
}

func newDumper(netnsFD int) (*Dumper, error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{NetNS: netnsFD, MessageBufferSize: recvBufSize})
	if err != nil {
		return nil, fmt.Errorf("open sock_diag socket: %w", err)
	}
	return &Dumper{conn: c}, nil
}

// Close releases the netlink socket.
func (d *Dumper) Close() error {
	if err := d.conn.Close(); err != nil {
		return fmt.Errorf("close sock_diag socket: %w", err)
	}
	return nil
}

// Dump lists the IPv4 and IPv6 TCP sockets of the Dumper's network
// namespace whose state is in mask.
func (d *Dumper) Dump(mask StateMask) ([]Socket, error) {
	return d.AppendDump(nil, mask)
}

// AppendDump is Dump appending to dst, so that a periodic census can reuse
// one slice: d.AppendDump(buf[:0], mask). On error it returns dst as it was
// given. After an error other than a parse error, a reply may be left
// half-read: Close the Dumper and open another.
func (d *Dumper) AppendDump(dst []Socket, mask StateMask) ([]Socket, error) {
	return d.AppendQuery(dst, Query{States: mask})
}

// AppendDumpFamily is AppendDump for one family only (see Query.Family).
func (d *Dumper) AppendDumpFamily(dst []Socket, family event.Family, mask StateMask) ([]Socket, error) {
	if family != event.IPv4 && family != event.IPv6 {
		return dst, fmt.Errorf("sock_diag dump: unsupported family %v", family)
	}
	return d.AppendQuery(dst, Query{States: mask, Family: family})
}

// AppendQuery appends the sockets q asks for to dst, as AppendDump does.
func (d *Dumper) AppendQuery(dst []Socket, q Query) ([]Socket, error) {
	fams := []uint8{afInet, afInet6}
	switch q.Family {
	case 0:
	case event.IPv4, event.IPv6:
		fams = []uint8{uint8(q.Family)}
	default:
		return dst, fmt.Errorf("sock_diag dump: unsupported family %v", q.Family)
	}
	if q.States == 0 {
		return dst, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	start := len(dst)
	var err error
	for _, fam := range fams {
		if dst, err = d.dumpFamily(dst, fam, q); err != nil {
			return dst[:start], err
		}
	}
	return dst, nil
}

// dumpFamily dumps one family. ENOENT means the kernel has no diag handler
// for it: the modules are loaded once, as the kernel would have, and the
// dump tried again.
func (d *Dumper) dumpFamily(dst []Socket, family uint8, q Query) ([]Socket, error) {
	out, err := d.dumpOnce(dst, family, q)
	if !errors.Is(err, unix.ENOENT) {
		return out, err
	}
	why := "loading them was tried before"
	if !d.loadTried {
		d.loadTried = true
		lerr := loadDiagModules()
		if lerr == nil {
			return d.dumpOnce(dst, family, q)
		}
		why = "loading them failed: " + lerr.Error()
	}
	return out, fmt.Errorf("%w (%s): run `modprobe tcp_diag` as root, or use a kernel built with CONFIG_INET_TCP_DIAG (%w)", ErrNoTCPDiag, why, err)
}

func (d *Dumper) dumpOnce(dst []Socket, family uint8, q Query) ([]Socket, error) {
	mask := q.States
	req, err := d.conn.Send(netlink.Message{
		Header: netlink.Header{
			Type:  sockDiagByFamily,
			Flags: netlink.Request | netlink.Dump,
		},
		Data: BuildRequest(family, mask, q.Info),
	})
	if err != nil {
		return dst, fmt.Errorf("sock_diag dump request (family %d, %v): %w", family, mask, err)
	}
	// Read the whole reply even after a message that does not parse, so
	// that no datagram is left for the next dump; skip messages of other
	// sequence numbers (the rest of an earlier, abandoned reply).
	var firstErr error
	for m, err := range d.conn.ReceiveIter() {
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("sock_diag dump (family %d, %v): %w", family, mask, err)
			}
			break
		}
		if m.Header.Sequence != req.Header.Sequence || m.Header.Type != sockDiagByFamily || firstErr != nil {
			continue
		}
		s, err := ParseInetDiagMsg(m.Data)
		if err != nil {
			firstErr = err
			continue
		}
		dst = append(dst, s)
	}
	return dst, firstErr
}

// Dump lists the TCP sockets in the calling thread's network namespace
// whose state is in mask, for IPv4 and IPv6. It opens and closes a netlink
// socket; a periodic census should keep a Dumper instead.
func Dump(mask StateMask) ([]Socket, error) {
	d, err := NewDumper()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Dump(mask)
}
