package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
)

// spans records every span of the test binary. The package tracers bind to
// the first provider installed, so it is installed once, here.
var spans = tracetest.NewInMemoryExporter()

func TestMain(m *testing.M) {
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)))
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}

// result is what one run of the command gave.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the command in this process with stdin and args.
func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// outLine is one line of submit's output.
type outLine struct {
	Index       *uint64 `json:"index"`
	Value       *string `json:"value"`
	ValueBase64 *string `json:"value_base64"`
	Dropped     bool    `json:"dropped"`
	Error       *string `json:"error"`
}

// parseOutput parses submit's output and checks that it has one line per
// record, indexes 0, 1, 2… in order, each with exactly one outcome.
func parseOutput(t *testing.T, s string) []outLine {
	t.Helper()
	var lines []outLine
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var l outLine
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("output line %d %q: %v", len(lines)+1, sc.Text(), err)
		}
		if l.Index == nil || *l.Index != uint64(len(lines)) {
			t.Fatalf("output line %d %q: want index %d", len(lines)+1, sc.Text(), len(lines))
		}
		n := 0
		for _, set := range []bool{l.Value != nil, l.ValueBase64 != nil, l.Dropped, l.Error != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("output line %d %q: want exactly one of value, value_base64, dropped, error", len(lines)+1, sc.Text())
		}
		lines = append(lines, l)
	}
	return lines
}

func TestSubmit(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 2})
	nats := "--nats=" + f.URL
	var numbers strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&numbers, "record-%d\n", i)
	}

	t.Run("lines in order over many batches", func(t *testing.T) {
		r := run(t, numbers.String(), nats, "submit", "--plugin", "upper", "--batch-size", "7")
		if r.code != ExitOK || r.stderr != "" {
			t.Fatalf("exit %d, stderr %q; want 0 and nothing", r.code, r.stderr)
		}
		lines := parseOutput(t, r.stdout)
		if len(lines) != 1000 {
			t.Fatalf("%d output lines, want 1000", len(lines))
		}
		for i, l := range lines {
			if want := fmt.Sprintf("RECORD-%d", i); l.Value == nil || *l.Value != want {
				t.Fatalf("line %d = %+v, want value %q", i, l, want)
			}
		}
	})

	t.Run("not utf-8 comes back as base64", func(t *testing.T) {
		r := run(t, "ok\n\xff\xfe\n", nats, "submit", "--plugin", "identity")
		if r.code != ExitOK {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		lines := parseOutput(t, r.stdout)
		if len(lines) != 2 || lines[1].ValueBase64 == nil || *lines[1].ValueBase64 != "//4=" {
			t.Fatalf("output %q: want line 2 with value_base64 //4=", r.stdout)
		}
	})

	t.Run("a chain of steps", func(t *testing.T) {
		r := run(t, "a\nboom\nc\n", nats, "submit", "--step", "fail:match=boom", "--step", "upper", "--priority", "high")
		if r.code != ExitRecordErrors {
			t.Fatalf("exit %d, want %d; stderr %q", r.code, ExitRecordErrors, r.stderr)
		}
		lines := parseOutput(t, r.stdout)
		if len(lines) != 3 || lines[0].Value == nil || *lines[0].Value != "A" || lines[1].Error == nil ||
			!strings.HasPrefix(*lines[1].Error, "step 1 (fail): ") || lines[2].Value == nil || *lines[2].Value != "C" {
			t.Fatalf("output %q: want A, step 1's error, C", r.stdout)
		}
	})

	t.Run("record errors exit 3", func(t *testing.T) {
		r := run(t, "a\nboom\nc\nboom too\n", nats, "submit", "-p", "fail", "--config", "match=boom")
		if r.code != ExitRecordErrors {
			t.Fatalf("exit %d, want %d; stderr %q", r.code, ExitRecordErrors, r.stderr)
		}
		if want := "dataflare: 2 of 4 records got errors\n"; r.stderr != want {
			t.Errorf("stderr = %q, want %q", r.stderr, want)
		}
		lines := parseOutput(t, r.stdout)
		var errs []uint64
		for _, l := range lines {
			if l.Error != nil {
				errs = append(errs, *l.Index)
			}
		}
		if fmt.Sprint(errs) != "[1 3]" || len(lines) != 4 {
			t.Errorf("errors at %v of %d lines, want [1 3] of 4", errs, len(lines))
		}
	})

	t.Run("jsonl with malformed lines", func(t *testing.T) {
		in := `{"key":"k","value":"one"}` + "\n" + `{"value": 2}` + "\n" + "{oops\n" + `{"value_base64":"dGhyZWU="}` + "\n"
		r := run(t, in, nats, "submit", "-p", "upper", "--format", "jsonl")
		if r.code != ExitRecordErrors {
			t.Fatalf("exit %d, want %d; stderr %q", r.code, ExitRecordErrors, r.stderr)
		}
		lines := parseOutput(t, r.stdout)
		if len(lines) != 4 {
			t.Fatalf("%d output lines, want 4: %q", len(lines), r.stdout)
		}
		if *lines[0].Value != "ONE" || *lines[3].Value != "THREE" {
			t.Errorf("values %q, %q; want ONE, THREE", *lines[0].Value, *lines[3].Value)
		}
		for i, prefix := range map[int]string{1: "line 2: ", 2: "line 3: malformed JSON"} {
			if lines[i].Error == nil || !strings.HasPrefix(*lines[i].Error, prefix) {
				t.Errorf("line %d = %+v, want an error starting %q", i, lines[i], prefix)
			}
		}
	})

	t.Run("files in and out", func(t *testing.T) {
		dir := t.TempDir()
		in, out := filepath.Join(dir, "in.txt"), filepath.Join(dir, "out.jsonl")
		if err := os.WriteFile(in, []byte("x\ny\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := run(t, "", nats, "submit", "-p", "upper", "--in", in, "--out", out)
		if r.code != ExitOK || r.stdout != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if want := "{\"index\":0,\"value\":\"X\"}\n{\"index\":1,\"value\":\"Y\"}\n"; string(got) != want {
			t.Errorf("output file %q, want %q", got, want)
		}
	})

	t.Run("empty input", func(t *testing.T) {
		r := run(t, "", nats, "submit", "-p", "upper")
		if r.code != ExitOK || r.stdout != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and no output", r.code, r.stdout, r.stderr)
		}
	})

	errorTests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown plugin", []string{"submit", "-p", "nope"}, ExitRuntime, "unknown plugin nope"},
		{"missing input file", []string{"submit", "-p", "upper", "--in", "/nonexistent/in.txt"}, ExitRuntime, "input: open /nonexistent/in.txt"},
		{"no plugin", []string{"submit"}, ExitUsage, "submit needs --plugin NAME (or --step PLUGIN...)"},
		{"bad format", []string{"submit", "-p", "upper", "--format", "csv"}, ExitUsage, `--format "csv"`},
		{"bad config", []string{"submit", "-p", "upper", "--config", "novalue"}, ExitUsage, `--config "novalue": want KEY=VALUE`},
		{"duplicate config", []string{"submit", "-p", "upper", "-c", "a=1", "-c", "a=2"}, ExitUsage, `key "a" given twice`},
		{"unknown flag", []string{"submit", "--nope"}, ExitUsage, "unknown flag: --nope"},
		{"argument", []string{"status", "extra"}, ExitUsage, "takes no arguments"},
	}
	for _, tt := range errorTests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "x\n", append([]string{nats}, tt.args...)...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tt.code, r.stderr)
			}
			first, _, _ := strings.Cut(r.stderr, "\n")
			if !strings.HasPrefix(first, "dataflare: ") || !strings.Contains(first, tt.want) {
				t.Errorf("stderr %q: want a first line 'dataflare: …%s…'", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}

	t.Run("status --json", func(t *testing.T) {
		r := run(t, "", nats, "status", "--json")
		if r.code != ExitOK {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		var st fleet.Status
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r.stdout)
		}
		if len(st.Workers) != 2 {
			t.Errorf("%d workers in the status, want 2", len(st.Workers))
		}
	})

	t.Run("status table", func(t *testing.T) {
		r := run(t, "", nats, "status")
		if r.code != ExitOK {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		for _, want := range []string{"WORKER", "HEALTH", "PLUGIN", "upper", "healthy"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("status table lacks %q:\n%s", want, r.stdout)
			}
		}
	})

	t.Run("report", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "report.json")
		r := run(t, "", nats, "report", "--out", out)
		if r.code != ExitOK {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var rep fleet.Report
		if err := json.Unmarshal(data, &rep); err != nil {
			t.Fatalf("report: %v\n%s", err, data)
		}
	})
}

func TestNoWorkers(t *testing.T) {
	f := localtest.Start(t, local.Config{})
	r := run(t, "x\n", "--nats="+f.URL, "submit", "-p", "upper")
	if r.code != ExitRuntime || !strings.Contains(r.stderr, "no workers") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("exit %d, stderr %q; want 1 and one line about no workers", r.code, r.stderr)
	}
}

func TestUnreachableNATS(t *testing.T) {
	for _, args := range [][]string{{"status"}, {"report"}, {"submit", "-p", "upper"}, {"coordinator"}, {"worker"}} {
		t.Run(args[0], func(t *testing.T) {
			r := run(t, "", append([]string{"--nats", "nats://127.0.0.1:1"}, args...)...)
			if r.code != ExitRuntime {
				t.Fatalf("exit %d, want 1; stderr %q", r.code, r.stderr)
			}
			if want := "dataflare: cannot reach NATS at nats://127.0.0.1:1: "; !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr %q: want one line starting %q", r.stderr, want)
			}
		})
	}
}

func TestNATSURLFromEnvironment(t *testing.T) {
	t.Setenv("NATS_URL", "nats://127.0.0.1:2")
	r := run(t, "", "status")
	if !strings.Contains(r.stderr, "nats://127.0.0.1:2") {
		t.Errorf("stderr %q: want the URL from $NATS_URL", r.stderr)
	}
	r = run(t, "", "--nats", "nats://127.0.0.1:3", "status")
	if !strings.Contains(r.stderr, "nats://127.0.0.1:3") {
		t.Errorf("stderr %q: want --nats to win over $NATS_URL", r.stderr)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"submit", "--help"}, {"dev", "--help"}, {"status", "--help"}} {
		r := run(t, "", args...)
		if r.code != ExitOK || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	r := run(t, "", "--help")
	for _, cmd := range []string{"demo", "dev", "coordinator", "worker", "submit", "status", "report"} {
		if !strings.Contains(r.stdout, "\n  "+cmd+" ") {
			t.Errorf("--help does not list %s:\n%s", cmd, r.stdout)
		}
	}
}

func TestNoCoordinator(t *testing.T) {
	srv := natstest.RunServer(t)
	out := filepath.Join(t.TempDir(), "report.json")
	for _, args := range [][]string{{"status"}, {"report", "--out", out}, {"submit", "-p", "upper"}} {
		t.Run(args[0], func(t *testing.T) {
			r := run(t, "x\n", append([]string{"--nats", srv.ClientURL()}, args...)...)
			if r.code != ExitRuntime || r.stderr != "dataflare: "+errNoCoordinator.Error()+"\n" {
				t.Errorf("exit %d, stderr %q; want 1 and one line saying no coordinator answered", r.code, r.stderr)
			}
		})
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("report --out created %s without a report (stat: %v)", out, err)
	}
}

func TestMissingCredentialFiles(t *testing.T) {
	for _, flag := range []string{"--creds", "--tlscert", "--tlsca"} {
		t.Run(flag, func(t *testing.T) {
			args := []string{"--nats", "nats://127.0.0.1:1", flag, "/nonexistent/file", "status"}
			if flag == "--tlscert" {
				args = append(args, "--tlskey", "/nonexistent/key")
			}
			r := run(t, "", args...)
			if r.code != ExitRuntime || !strings.HasPrefix(r.stderr, "dataflare: "+flag+": ") {
				t.Errorf("exit %d, stderr %q; want 1 and a line naming %s", r.code, r.stderr, flag)
			}
		})
	}
}
