package twins_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dataflare/dataflare/plugin/builtin/twins"
)

// The committed upper-c/upper.wasm is what upper-c/build.sh makes of
// upper.c, when this machine has the clang that built it.
func TestUpperCIsCurrent(t *testing.T) {
	clang, err := exec.LookPath("clang")
	if err != nil {
		t.Skip("no clang: not rebuilding upper-c/upper.wasm")
	}
	if _, err := exec.LookPath("wasm-ld"); err != nil {
		t.Skip("no wasm-ld: not rebuilding upper-c/upper.wasm")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh to run upper-c/build.sh: not rebuilding upper-c/upper.wasm")
	}
	targets, err := exec.Command(clang, "--print-targets").Output()
	if err != nil || !bytes.Contains(targets, []byte("wasm32")) {
		t.Skipf("clang has no wasm32 target (%v): not rebuilding upper-c/upper.wasm", err)
	}
	out, err := exec.Command(clang, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	version, _, _ := strings.Cut(string(out), "\n")
	script, err := os.ReadFile("upper-c/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(script, []byte("# built-with: "+version+"\n")) {
		t.Skipf("upper-c/upper.wasm was built by another clang than %q; not comparing", version)
	}
	dst := filepath.Join(t.TempDir(), "upper.wasm")
	cmd := exec.Command("sh", "upper-c/build.sh", dst)
	cmd.Env = append(os.Environ(), "CC="+clang)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	built, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built, twins.Upper) {
		t.Fatalf("plugin/builtin/twins/upper-c/upper.wasm is stale (%d bytes committed, %d built): run go generate ./plugin/builtin/twins",
			len(twins.Upper), len(built))
	}
}
