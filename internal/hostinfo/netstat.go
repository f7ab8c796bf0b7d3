package hostinfo

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// Netstat holds the kernel's SNMP-style counters. TcpExt counters from
// /proc/net/netstat keep their bare names ("TW", "TWRecycled", "TWKilled",
// "TCPTimeWaitOverflow", "TCPAbortOnClose", "ListenOverflows", ...); every
// other section's counters are prefixed with the section name and a dot
// ("IpExt.InOctets", and from /proc/net/snmp "Tcp.ActiveOpens",
// "Tcp.CurrEstab", "Udp.InDatagrams", ...).
//
// Most are monotonic counters; a few snmp values are gauges
// (Tcp.CurrEstab) or constants (Tcp.RtoMin). Negative values (Tcp.MaxConn
// is -1) are left out.
type Netstat map[string]uint64

// bareSection is the section whose counter names are kept without prefix.
const bareSection = "TcpExt"

// ReadNetstat reads net/netstat (required) and net/snmp (optional) below
// procfs, which is rooted at /proc.
func ReadNetstat(procfs fs.FS) (Netstat, error) {
	n := make(Netstat, 256)
	b, err := fs.ReadFile(procfs, "net/netstat")
	if err != nil {
		return nil, fmt.Errorf("read netstat: %w", err)
	}
	if err := parseCounters(b, n); err != nil {
		return nil, fmt.Errorf("parse net/netstat: %w", err)
	}
	b, err = fs.ReadFile(procfs, "net/snmp")
	if errors.Is(err, fs.ErrNotExist) {
		return n, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snmp: %w", err)
	}
	if err := parseCounters(b, n); err != nil {
		return nil, fmt.Errorf("parse net/snmp: %w", err)
	}
	return n, nil
}

// ParseNetstat parses text in the format of /proc/net/netstat and
// /proc/net/snmp: pairs of lines "Section: Name1 Name2 ..." and
// "Section: value1 value2 ...". Sections it does not know are kept like any
// other; a value line whose section or length does not match its header
// line, a header without values, or a value that is not an integer is an
// error.
func ParseNetstat(data []byte) (Netstat, error) {
	n := make(Netstat)
	if err := parseCounters(data, n); err != nil {
		return nil, err
	}
	return n, nil
}

func parseCounters(data []byte, into Netstat) error {
	var lines [][]byte
	for line := range bytes.Lines(data) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			lines = append(lines, line)
		}
	}
	if len(lines)%2 != 0 {
		return fmt.Errorf("odd number of lines (%d): header without values", len(lines))
	}
	for i := 0; i < len(lines); i += 2 {
		hsec, hdr, err := splitSection(lines[i])
		if err != nil {
			return fmt.Errorf("line %d: %w", i+1, err)
		}
		vsec, vals, err := splitSection(lines[i+1])
		if err != nil {
			return fmt.Errorf("line %d: %w", i+2, err)
		}
		if hsec != vsec {
			return fmt.Errorf("line %d: section %q follows header of section %q", i+2, vsec, hsec)
		}
		names := strings.Fields(hdr)
		values := strings.Fields(vals)
		if len(names) != len(values) {
			return fmt.Errorf("section %s: %d names but %d values", hsec, len(names), len(values))
		}
		prefix := hsec + "."
		if hsec == bareSection {
			prefix = ""
		}
		for j, name := range names {
			v, err := strconv.ParseUint(values[j], 10, 64)
			if err != nil {
				if _, ierr := strconv.ParseInt(values[j], 10, 64); ierr == nil {
					continue // negative: Tcp.MaxConn is -1 ("no limit")
				}
				return fmt.Errorf("section %s: counter %s: %w", hsec, name, err)
			}
			into[prefix+name] = v
		}
	}
	return nil
}

// splitSection splits "Section: rest" into its parts.
func splitSection(line []byte) (section, rest string, err error) {
	sec, rest0, ok := bytes.Cut(line, []byte(":"))
	if !ok || len(sec) == 0 || bytes.ContainsAny(sec, " \t") {
		return "", "", fmt.Errorf("no section name in %q", truncate(line, 40))
	}
	return string(sec), string(rest0), nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Delta returns n minus before for each counter present in both. A counter
// that went down (a gauge, a wrapped counter, or a namespace recreated
// between the two reads) gives 0.
func (n Netstat) Delta(before Netstat) Netstat {
	d := make(Netstat, len(n))
	for k, after := range n {
		b, ok := before[k]
		if !ok {
			continue
		}
		if after >= b {
			d[k] = after - b
		} else {
			d[k] = 0
		}
	}
	return d
}
