package hostinfo

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// KernelRelease returns the running kernel's release string, as uname -r
// prints it ("6.18.44-fc-v669"), from sys/kernel/osrelease below procfs.
func KernelRelease(procfs fs.FS) (string, error) {
	b, err := fs.ReadFile(procfs, "sys/kernel/osrelease")
	if err != nil {
		return "", fmt.Errorf("read kernel release: %w", err)
	}
	r := strings.TrimSpace(string(b))
	if r == "" {
		return "", fmt.Errorf("read kernel release: sys/kernel/osrelease is empty")
	}
	return r, nil
}

// ShortRelease returns the leading dotted numbers of a release string:
// "6.18.44-fc-v669" -> "6.18.44", "5.15.0-91-generic" -> "5.15.0",
// "6.8.0+" -> "6.8.0". It returns "" when release does not start with a
// digit.
func ShortRelease(release string) string {
	end := 0
	for end < len(release) {
		c := release[end]
		if c >= '0' && c <= '9' {
			end++
			continue
		}
		if c == '.' && end+1 < len(release) && release[end+1] >= '0' && release[end+1] <= '9' && end > 0 {
			end++
			continue
		}
		break
	}
	return release[:end]
}

// KernelVersion parses the leading "major.minor[.patch]" of a release
// string. ok is false when there is no major.minor.
func KernelVersion(release string) (major, minor, patch int, ok bool) {
	parts := strings.Split(ShortRelease(release), ".")
	if len(parts) < 2 {
		return 0, 0, 0, false
	}
	var err error
	if major, err = strconv.Atoi(parts[0]); err != nil {
		return 0, 0, 0, false
	}
	if minor, err = strconv.Atoi(parts[1]); err != nil {
		return 0, 0, 0, false
	}
	if len(parts) > 2 {
		if patch, err = strconv.Atoi(parts[2]); err != nil {
			return 0, 0, 0, false
		}
	}
	return major, minor, patch, true
}

// KernelAtLeast reports whether release is major.minor or newer. It is false
// when release cannot be parsed.
func KernelAtLeast(release string, major, minor int) bool {
	ma, mi, _, ok := KernelVersion(release)
	if !ok {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}
