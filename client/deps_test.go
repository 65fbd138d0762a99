package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLightDependencies holds the client to what it is: a program that
// submits work and reads results carries no part of the runtime — no
// Manager, pool, sizer, WebAssembly host, worker, coordinator, embedded
// server or wazero.
func TestLightDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	forbidden := []string{
		"github.com/dataflare/dataflare/manager", "github.com/dataflare/dataflare/pool",
		"github.com/dataflare/dataflare/sizer", "github.com/dataflare/dataflare/wasm",
		"github.com/dataflare/dataflare/wasmstore", "github.com/dataflare/dataflare/worker",
		"github.com/dataflare/dataflare/coordinator", "github.com/dataflare/dataflare/local",
		"github.com/nats-io/nats-server", "github.com/tetratelabs/wazero",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("the client depends on %s", dep)
			}
		}
	}
}
