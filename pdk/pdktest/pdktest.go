// Package pdktest builds Go plugins for tests: a plugin's own tests can
// build it with the standard toolchain and run it in a wasm.Runtime, as a
// worker would.
//
//	func TestPlugin(t *testing.T) {
//		module := pdktest.Build(t, ".")
//		rt, _ := wasm.NewRuntime(ctx)
//		p, err := rt.Load(ctx, module)
//		…
//	}
package pdktest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Flags are the go build flags Build uses: a WASI reactor, with no file
// paths or version-control data in it, so equal sources build to equal
// bytes.
var Flags = []string{"-buildmode=c-shared", "-trimpath", "-buildvcs=false"}

var (
	mu    sync.Mutex
	built = map[string][]byte{}
)

// Build compiles the main package pkg (a directory or an import path, as
// go build takes it, relative to the test's directory) for GOOS=wasip1
// GOARCH=wasm and returns the module. Within one test binary each pkg is
// built once. It fails tb when the build fails.
func Build(tb testing.TB, pkg string) []byte {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if b, ok := built[pkg]; ok {
		return b
	}
	b, err := build(pkg)
	if err != nil {
		tb.Fatalf("pdktest: %v", err)
	}
	built[pkg] = b
	return b
}

func build(pkg string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "pdktest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "plugin.wasm")
	cmd := exec.Command(goTool(), append(append([]string{"build"}, Flags...), "-o", out, pkg)...)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return os.ReadFile(out)
}

// goTool returns the go command of the toolchain running the test, or "go".
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// CacheDir returns a directory for a wasm.Runtime's compiled-module cache
// (wasm.WithCacheDir) that tests share across runs, so that a Go plugin is
// compiled once, not in every test: under the user's cache directory, named
// after the Go version and the wazero version in the nearest go.mod.
// wazero keys its cache by its own version, which a test binary cannot read
// (it reports "dev"), so the directory changes when wazero does. Without a
// user cache directory it returns a directory of tb's.
func CacheDir(tb testing.TB) string {
	tb.Helper()
	base, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(tb.TempDir(), "wazero")
	}
	sum := sha256.Sum256([]byte(runtime.Version() + " " + wazeroVersion()))
	return filepath.Join(base, "dataflare-test", "wazero-"+hex.EncodeToString(sum[:6]))
}

// wazeroVersion returns the wazero requirement line of the nearest go.mod
// above the working directory, or "".
func wazeroVersion() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if line := strings.TrimSpace(sc.Text()); strings.Contains(line, "github.com/tetratelabs/wazero ") {
					return line
				}
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
