package security

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/internal/natstest"
)

// dataflareBin is the dataflare command TestMain builds: the tests run it
// as a user would, as a process.
var dataflareBin string

// The CLI's exit codes (docs/cli.md).
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dataflare-security-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dataflareBin = filepath.Join(dir, "dataflare")
	if out, err := exec.Command("go", "build", "-o", dataflareBin, "../../cmd/dataflare").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build dataflare: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(natstest.LeakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runCLI runs the dataflare command with args and returns its exit code
// and outputs (-1 when it could not run).
func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(dataflareBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	return -1, stdout.String(), err.Error()
}
