// Package e2e tests the fleet as it runs for real: the dataflare binary's
// coordinator and worker processes against a JetStream server, killed,
// stopped and restarted while jobs run. The binaries are built once, in
// TestMain. Longer fault runs are behind the chaos build tag
// (go test -tags chaos ./e2e/...).
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/internal/natstest"
)

// Paths of the binaries TestMain builds.
var (
	dataflareBin  string
	testworkerBin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dataflare-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dataflareBin = filepath.Join(dir, "dataflare")
	testworkerBin = filepath.Join(dir, "testworker")
	for bin, pkg := range map[string]string{dataflareBin: "../cmd/dataflare", testworkerBin: "./testworker"} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
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
