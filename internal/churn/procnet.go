package churn

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"time"
)

// Kernel TCP state numbers as /proc/net/tcp prints them (tcp_states.h).
const (
	stateEstablished = 0x01
	stateTimeWait    = 0x06
	stateCloseWait   = 0x08
	stateListen      = 0x0a
)

// tcpStates counts the sockets of the current network namespace whose local
// or remote port is port, by kernel state number. It reads /proc/net/tcp6
// for IPv6 and /proc/net/tcp otherwise. TIME_WAIT mini-sockets are listed
// with their substate, so an orphan waiting out tcp_fin_timeout shows as
// FIN_WAIT2.
func tcpStates(ipv6 bool, port uint16) ([16]int, error) {
	name := "/proc/net/tcp"
	if ipv6 {
		name = "/proc/net/tcp6"
	}
	f, err := os.Open(name)
	if err != nil {
		return [16]int{}, err
	}
	defer f.Close()
	return countStates(f, port)
}

// countStates does tcpStates' work on the text of a /proc/net/tcp file. It
// allocates nothing per line: with many TIME_WAIT sockets around the file
// has tens of thousands of lines.
func countStates(r io.Reader, port uint16) ([16]int, error) {
	var counts [16]int
	sc := bufio.NewScanner(r)
	sc.Scan() // header
	for sc.Scan() {
		// "  12: 0100007F:A0B2 0100007F:8A3C 06 ..."
		_, rest := nextField(sc.Bytes()) // "12:"
		local, rest := nextField(rest)
		remote, rest := nextField(rest)
		state, _ := nextField(rest)
		if hexPort(local) != port && hexPort(remote) != port {
			continue
		}
		if st, ok := parseHex(state); ok && st < uint64(len(counts)) {
			counts[st]++
		}
	}
	return counts, sc.Err()
}

// nextField splits the first space-separated field off line.
func nextField(line []byte) (field, rest []byte) {
	line = bytes.TrimLeft(line, " ")
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return line, nil
	}
	return line[:i], line[i:]
}

// hexPort extracts the port from a /proc/net/tcp "ADDR:PORT" field; 0 if
// malformed, which matches no server port.
func hexPort(field []byte) uint16 {
	i := bytes.LastIndexByte(field, ':')
	if i < 0 {
		return 0
	}
	p, ok := parseHex(field[i+1:])
	if !ok || p > 0xffff {
		return 0
	}
	return uint16(p)
}

// parseHex parses up to 16 hex digits.
func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(c)
	}
	return v, true
}

// settle waits, up to timeout, until no socket on port is in a state other
// than TIME_WAIT. The last ACK of a connection is processed in softirq,
// which under load runs in ksoftirqd after the close() that sent the FIN
// has returned; waiting here means every transition in Result.Transitions
// has happened when Run returns. It gives up quietly: a socket from another
// run that happens to use the port must not fail this one.
func settle(ipv6 bool, port uint16, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		counts, err := tcpStates(ipv6, port)
		if err != nil {
			return
		}
		busy := 0
		for st, n := range counts {
			if st != stateTimeWait {
				busy += n
			}
		}
		if busy == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
