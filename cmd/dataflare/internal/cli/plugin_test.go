package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

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

	steps := []struct {
		name   string
		args   []string
		code   int
		stdout string // a regexp the output must match
		stderr string // a substring of the error line
	}{
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

	r := run(t, "", nats, "plugin", "ls", "--json")
	var ms []wasmstore.Manifest
	if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil {
		t.Fatalf("plugin ls --json: %v\n%s", err, r.stdout)
	}
	if len(ms) != 1 || ms[0].Name != "up" || ms[0].Version != "1.0.0" || ms[0].Size != int64(len(module)) || ms[0].Info.Name == "" {
		t.Errorf("plugin ls --json = %+v, want up@1.0.0 of %d bytes with its info", ms, len(module))
	}
}
