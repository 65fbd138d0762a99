package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/wasmstore"
)

// testModule is a small module implementing the plugin ABI.
const testModule = "../../../../wasm/testdata/abi_upper.wasm"

func TestPluginCommands(t *testing.T) {
	srv := natstest.RunServer(t)
	nats := "--nats=" + srv.ClientURL()
	module, err := os.ReadFile(testModule)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.wasm")
	// The same module with a custom section appended: other bytes, still valid.
	if err := os.WriteFile(other, append(append([]byte{}, module...), 0, 5, 3, 'x', 'y', 'z', 0), 0o600); err != nil {
		t.Fatal(err)
	}
	notWasm := filepath.Join(t.TempDir(), "not.wasm")
	if err := os.WriteFile(notWasm, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}

	steps := []cliStep{
		{"empty ls", []string{"plugin", "ls"}, ExitOK, `^no plugin modules stored`, ""},
		{"empty ls json", []string{"plugin", "ls", "--json"}, ExitOK, `^\[\]\n$`, ""},
		{"push with the module's version", []string{"plugin", "push", "up", testModule}, ExitOK, `^pushed up@1\.0\.0 sha256:[0-9a-f]{64} \(\d+ bytes\)\n$`, ""},
		{"push again is a no-op", []string{"plugin", "push", "up", testModule}, ExitOK, `^pushed up@1\.0\.0 `, ""},
		{"push a version", []string{"plugin", "push", "up", other, "--version", "2.0"}, ExitOK, `^pushed up@2\.0 `, ""},
		{"other bytes under a version", []string{"plugin", "push", "up", other, "--version", "1.0.0"}, ExitRuntime, "", "version exists"},
		{"not a module", []string{"plugin", "push", "bad", notWasm}, ExitRuntime, "", "is not a usable plugin"},
		{"missing file", []string{"plugin", "push", "bad", "/nonexistent.wasm"}, ExitRuntime, "", "no such file"},
		{"bad name", []string{"plugin", "push", "no/slash", testModule}, ExitUsage, "", `plugin name "no/slash"`},
		{"push needs two arguments", []string{"plugin", "push", "up"}, ExitUsage, "", "takes 2 argument(s)"},
		{"ls", []string{"plugin", "ls"}, ExitOK, `(?s)NAME +VERSION +DIGEST +SIZE +PUSHED\nup +2\.0 +sha256:[0-9a-f]{12} .*\nup +1\.0\.0 `, ""},
		{"info", []string{"plugin", "info", "up"}, ExitOK, `(?s)version: +2\.0 \(latest\).*version: +1\.0\.0\n.*type: +transformer`, ""},
		{"info of nothing", []string{"plugin", "info", "nope"}, ExitRuntime, "", "no plugin module named nope"},
		{"rm a version", []string{"plugin", "rm", "up", "--version", "2.0"}, ExitOK, `^removed up@2\.0\n$`, ""},
		{"rm it again", []string{"plugin", "rm", "up", "--version", "2.0"}, ExitRuntime, "", "no plugin module up@2.0"},
		{"rm of nothing", []string{"plugin", "rm", "nope"}, ExitRuntime, "", "no plugin module named nope"},
		{"unknown subcommand", []string{"plugin", "frob"}, ExitUsage, "", `unknown command "frob"`},
	}
	runSteps(t, nats, steps)

	r := run(t, "", nats, "plugin", "ls", "--json")
	var ms []wasmstore.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil {
		t.Fatalf("plugin ls --json: %v\n%s", err, r.stdout)
	}
	if len(ms) != 1 || ms[0].Name != "up" || ms[0].Version != "1.0.0" || ms[0].Size != int64(len(module)) || ms[0].Info.Name == "" {
		t.Errorf("plugin ls --json = %+v, want up@1.0.0 of %d bytes with its info", ms, len(module))
	}
}

// push's policy and signing flags, keygen, and what info shows of them.
func TestPluginPolicyAndSigning(t *testing.T) {
	srv := natstest.RunServer(t)
	nats := "--nats=" + srv.ClientURL()
	dir := t.TempDir()
	key := filepath.Join(dir, "signer.nk")
	r := run(t, "", "plugin", "keygen", "--out", key)
	if r.code != ExitOK || !regexp.MustCompile(`^A[A-Z2-7]{55}\n$`).MatchString(r.stdout) {
		t.Fatalf("keygen: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	pub := strings.TrimSpace(r.stdout)
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v, %v", fi, err)
	}
	seed, _ := os.ReadFile(key)
	if !strings.HasPrefix(string(seed), "SA") {
		t.Errorf("seed file holds %.2q…, want an account seed SA…", seed)
	}
	module, err := os.ReadFile(testModule)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.wasm")
	if err := os.WriteFile(other, append(append([]byte{}, module...), 0, 5, 3, 'x', 'y', 'z', 0), 0o600); err != nil {
		t.Fatal(err)
	}
	notKey := filepath.Join(dir, "not.nk")
	if err := os.WriteFile(notKey, []byte("SUAAAA"), 0o600); err != nil {
		t.Fatal(err)
	}

	steps := []cliStep{
		{"keygen over a file", []string{"plugin", "keygen", "--out", key}, ExitRuntime, "", "exists"},
		{"keygen without --out", []string{"plugin", "keygen"}, ExitUsage, "", "needs --out FILE"},
		{"bad timeout", []string{"plugin", "push", "up", testModule, "--timeout", "soon"}, ExitUsage, "", `--timeout "soon"`},
		{"negative timeout", []string{"plugin", "push", "up", testModule, "--timeout", "-1s"}, ExitUsage, "", "above 0"},
		{"bad memory", []string{"plugin", "push", "up", testModule, "--memory", "lots"}, ExitUsage, "", `--memory "lots"`},
		{"memory not in pages", []string{"plugin", "push", "up", testModule, "--memory", "100KiB"}, ExitUsage, "", "multiple of 64KiB"},
		{"memory too large", []string{"plugin", "push", "up", testModule, "--memory", "4GiB"}, ExitUsage, "", "at most 2GiB"},
		{"bad grant", []string{"plugin", "push", "up", testModule, "--grant", "net"}, ExitUsage, "", `--grant "net"`},
		{"bad kv grant", []string{"plugin", "push", "up", testModule, "--grant", "kv:a.b"}, ExitUsage, "", `--grant "kv:a.b"`},
		{"bad key file", []string{"plugin", "push", "up", testModule, "--sign", notKey}, ExitUsage, "", "--sign"},
		{"push with a policy, signed", []string{"plugin", "push", "up", testModule, "--timeout", "50ms", "--memory", "1MiB", "--grant", "log", "--grant", "kv:users", "--sign", key},
			ExitOK, `^pushed up@1\.0\.0 sha256:[0-9a-f]{64} \(\d+ bytes\), policy: timeout 50ms, memory 1MiB, grants kv:users log, signed by ` + pub + `\n$`, ""},
		{"the same push is a no-op", []string{"plugin", "push", "up", testModule, "--timeout", "50ms", "--memory", "1MiB", "--grant", "kv:users", "--grant", "log", "--sign", key}, ExitOK, `^pushed up@1\.0\.0 `, ""},
		{"another policy for the version", []string{"plugin", "push", "up", testModule, "--timeout", "1h", "--sign", key}, ExitRuntime, "", "another policy or signature"},
		{"unsigned over the signed version", []string{"plugin", "push", "up", testModule, "--timeout", "50ms", "--memory", "1MiB", "--grant", "log", "--grant", "kv:users"}, ExitRuntime, "", "version exists"},
		{"the same bytes with another policy", []string{"plugin", "push", "up", testModule, "--version", "2", "--timeout", "2h"}, ExitRuntime, "", "up@1.0.0 holds the same module"},
		{"a generous version", []string{"plugin", "push", "up", other, "--version", "2", "--memory", "1GiB", "--timeout", "2h"}, ExitOK, `policy: timeout 2h0m0s, memory 1GiB\n$`, ""},
		{"info", []string{"plugin", "info", "up"}, ExitOK, `(?s)version: +2 \(latest\).*policy: +timeout 2h0m0s, memory 1GiB \(memory above the default worker ceiling of 128MiB; timeout above the default worker batch timeout of 1m0s: a worker's own ceiling applies\)\n` +
			`signed by: +nobody.*version: +1\.0\.0\n.*policy: +timeout 50ms, memory 1MiB, grants kv:users log\nsigned by: +` + pub, ""},
		{"bad trusted key", []string{"worker", "--trusted-key", "UABC"}, ExitUsage, "", `--trusted-key "UABC"`},
		{"bad trusted key for dev", []string{"dev", "--trusted-key", "UABC"}, ExitUsage, "", `--trusted-key "UABC"`},
		{"bad memory budget", []string{"worker", "--memory-budget", "lots"}, ExitUsage, "", `--memory-budget "lots"`},
		{"tiny memory budget", []string{"worker", "--memory-budget", "64KiB"}, ExitUsage, "", "at least 1MiB"},
		{"grant of a fleet bucket", []string{"plugin", "push", "p", "x.wasm", "--grant", "kv:DF_JOBS"}, ExitUsage, "", "the fleet's own"},
	}
	runSteps(t, nats, steps)

	r = run(t, "", nats, "plugin", "info", "up", "--json")
	var ms []wasmstore.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil || len(ms) != 2 {
		t.Fatalf("info --json: %v, %q", err, r.stdout)
	}
	if p := ms[1].Policy; p.Timeout != 50*time.Millisecond || p.Memory != 1<<20 || len(p.Grants) != 2 || ms[1].Signer != pub {
		t.Errorf("info --json: policy %+v, signer %s", p, ms[1].Signer)
	}
	if !strings.Contains(r.stdout, `"policy": {`) || !strings.Contains(r.stdout, `"timeout": "50ms"`) || !strings.Contains(r.stdout, `"signature": "`) {
		t.Errorf("info --json does not show the policy and signature plainly:\n%s", r.stdout)
	}
	if err := ms[1].VerifySignature([]string{pub}); err != nil {
		t.Errorf("the pushed signature does not verify: %v", err)
	}
}

// cliStep is one command of a scripted CLI test and what it must give.
type cliStep struct {
	name   string
	args   []string // after the --nats flag
	code   int
	stdout string // a regexp the output must match
	stderr string // a substring of the error line
}

// runSteps runs steps in order, each as a subtest, against the server
// whose --nats flag is nats.
func runSteps(t *testing.T, nats string, steps []cliStep) {
	t.Helper()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := run(t, "", append([]string{nats}, st.args...)...)
			if r.code != st.code {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", r.code, st.code, r.stdout, r.stderr)
			}
			if st.stdout != "" && !regexp.MustCompile(st.stdout).MatchString(r.stdout) {
				t.Errorf("stdout %q does not match %s", r.stdout, st.stdout)
			}
			if st.stderr != "" {
				first, _, _ := strings.Cut(r.stderr, "\n")
				if !strings.HasPrefix(first, "dataflare: ") || !strings.Contains(first, st.stderr) {
					t.Errorf("stderr %q: want a line 'dataflare: …%s…'", r.stderr, st.stderr)
				}
			}
		})
	}
}
