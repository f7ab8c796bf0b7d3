// Package promtest runs Debian's promtool for tests: on the metrics
// tcptrace serves, and on the deploy files. Only tests import it.
package promtest

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Check runs `promtool ARGS...` with stdin (nil: none) and fails t if
// promtool rejects it. Without promtool the test skips, and fails with
// CI=true (scripts/setup.sh installs the prometheus package).
func Check(t testing.TB, stdin []byte, args ...string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found: scripts/setup.sh installs the prometheus package")
		}
		t.Skip("promtool not found (apt-get install prometheus)")
	}
	cmd := exec.Command(path, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
