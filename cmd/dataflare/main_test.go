package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/poll"
)

// bin is the dataflare binary, built once for all tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dataflare-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "dataflare")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build dataflare:", err)
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

// result is what one run of the binary gave.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// run runs the binary to its end with stdin and args, and $NATS_URL set to
// natsURL (unset when empty).
func run(t *testing.T, natsURL, stdin string, args ...string) result {
	t.Helper()
	return runEnv(t, environ(natsURL), stdin, args...)
}

// runEnv is run with the environment env.
func runEnv(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("dataflare %v: %v", args, err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// environ is the test's environment with NATS_URL set to url, and no
// OpenTelemetry exporter.
func environ(url string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_URL=") && !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	if url != "" {
		env = append(env, "NATS_URL="+url)
	}
	return env
}

// proc is a long-running dataflare process (dev, coordinator, worker).
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when both outputs are read to the end

	mu     sync.Mutex
	stdout []string
	stderr []string
}

// start starts the binary with args; the test's cleanup stops it.
func start(t *testing.T, natsURL string, args ...string) *proc {
	t.Helper()
	return startEnv(t, environ(natsURL), args...)
}

// startEnv is start with the environment env.
func startEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = env
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range []struct {
		r   io.Reader
		out *[]string
	}{{stdout, &p.stdout}, {stderr, &p.stderr}} {
		wg.Add(1)
		// Stops at the end of the process's output.
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(s.r)
			for sc.Scan() {
				p.mu.Lock()
				*s.out = append(*s.out, sc.Text())
				p.mu.Unlock()
			}
		}()
	}
	// Stops once both readers are done.
	go func() {
		wg.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
			p.cmd.Wait()
		}
	})
	return p
}

// waitFor waits until a line of the process's stdout (or stderr) matches
// re, and returns the submatches.
func (p *proc) waitFor(t *testing.T, stderr bool, re *regexp.Regexp) []string {
	t.Helper()
	var m []string
	err := poll.Until(context.Background(), 30*time.Second, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		lines := p.stdout
		if stderr {
			lines = p.stderr
		}
		for _, l := range lines {
			if m = re.FindStringSubmatch(l); m != nil {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("process ended; stdout %q, stderr %q", p.stdout, p.stderr)
		default:
		}
		return fmt.Errorf("no line matches %s yet; stdout %q, stderr %q", re, p.stdout, p.stderr)
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stop sends sig and returns the exit code, failing past a deadline.
func (p *proc) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("process did not stop within 30s of %v", sig)
		<-p.done
	}
	p.cmd.Wait()
	return p.cmd.ProcessState.ExitCode()
}

// checkOneLine checks that stderr is one "dataflare: …" line containing
// want (plus the usage hint for usage errors), and no stack trace.
func checkOneLine(t *testing.T, r result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) == 2 && lines[1] == "Run 'dataflare --help' for usage." {
		lines = lines[:1]
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "dataflare: ") || !strings.Contains(lines[0], want) {
		t.Errorf("stderr %q: want one line 'dataflare: …%s…'", r.stderr, want)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
		t.Errorf("stderr has a stack trace: %q", r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"status", "--bogus"}, "unknown flag: --bogus"},
		{"unknown global flag", []string{"--bogus", "status"}, "unknown flag: --bogus"},
		{"flag without value", []string{"submit", "--plugin"}, "flag needs an argument"},
		{"bad int", []string{"dev", "--workers", "many"}, `invalid argument "many"`},
		{"negative workers", []string{"dev", "--workers", "-1"}, "--workers -1 is negative"},
		{"dev on every address", []string{"dev", "--listen", "0.0.0.0:4222"}, "is not a loopback address"},
		{"dev on a public address", []string{"dev", "--listen", "192.0.2.7:4222"}, "--allow-remote"},
		{"batch timeout too long", []string{"submit", "-p", "upper", "--batch-timeout", "2h"}, "--batch-timeout 2h0m0s"},
		{"no plugin", []string{"submit"}, "submit needs --plugin NAME (or --step PLUGIN...)"},
		{"bad format", []string{"submit", "-p", "upper", "--format", "xml"}, `--format "xml"`},
		{"bad config", []string{"submit", "-p", "upper", "--config", "k"}, "want KEY=VALUE"},
		{"extra argument", []string{"status", "now"}, "takes no arguments"},
		{"bad log level", []string{"--log-level", "loud", "worker"}, "--log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "nats://127.0.0.1:1", "", tt.args...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", r.code, r.stderr)
			}
			checkOneLine(t, r, tt.want)
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

func TestUnreachableNATS(t *testing.T) {
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"report"}, {"submit", "-p", "upper"}, {"coordinator"}, {"worker"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := run(t, "nats://127.0.0.1:1", "a\n", args...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1; stderr %q", r.code, r.stderr)
			}
			checkOneLine(t, r, "cannot reach NATS at nats://127.0.0.1:1")
			if r.took > 5*time.Second {
				t.Errorf("took %v, want a few seconds at most", r.took)
			}
		})
	}
}

// outLine is one line of submit's output.
type outLine struct {
	Index       uint64  `json:"index"`
	Value       *string `json:"value"`
	ValueBase64 *string `json:"value_base64"`
	Dropped     bool    `json:"dropped"`
	Error       *string `json:"error"`
}

// parseOutput parses submit's output, checking the indexes run 0, 1, 2….
func parseOutput(t *testing.T, s string) []outLine {
	t.Helper()
	var lines []outLine
	for i, text := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if text == "" && i == 0 {
			break
		}
		var l outLine
		if err := json.Unmarshal([]byte(text), &l); err != nil {
			t.Fatalf("output line %d %q: %v", i+1, text, err)
		}
		if l.Index != uint64(i) {
			t.Fatalf("output line %d %q: index %d, want %d", i+1, text, l.Index, i)
		}
		lines = append(lines, l)
	}
	return lines
}

// scrape reads the metrics at url with the Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: not the Prometheus text format: %v", url, err)
	}
	return fams
}

// sum adds up the samples of a counter family, optionally only those with
// the given label value.
func sum(fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	var total float64
	f, ok := fams[name]
	if !ok {
		return -1
	}
	for _, m := range f.GetMetric() {
		match := label == ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				match = true
			}
		}
		if match {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

func healthz(t *testing.T, addr string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("healthz: %s %q, want 200 ok", resp.Status, body)
	}
}

var httpAddrRE = regexp.MustCompile(`serving /metrics and /healthz" addr=(\S+)`)

// TestDaemons runs a coordinator and a worker process against a NATS server,
// submits through a third process, and reads both daemons' metrics.
func TestDaemons(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	coord := start(t, url, "coordinator", "--http", "127.0.0.1:0")
	coordHTTP := coord.waitFor(t, true, httpAddrRE)[1]
	coord.waitFor(t, true, regexp.MustCompile(`coordinator started`))

	r := run(t, url, "a\n", "submit", "-p", "upper")
	if r.code != 1 {
		t.Fatalf("submit with no worker: exit %d, want 1; stderr %q", r.code, r.stderr)
	}
	checkOneLine(t, r, "no workers")

	work := start(t, url, "worker", "--http", "127.0.0.1:0", "--id", "w1", "--parallel", "2")
	workHTTP := work.waitFor(t, true, httpAddrRE)[1]
	// Ready once it has found the consumer, not when it starts serving HTTP.
	work.waitFor(t, true, regexp.MustCompile(`worker started`))
	healthz(t, coordHTTP)
	healthz(t, workHTTP)
	checkConsole(t, coordHTTP, "w1")

	const n = 2500
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	// The coordinator learns about the worker from its heartbeats.
	err := poll.Until(context.Background(), 10*time.Second, func() error {
		r = run(t, url, in.String(), "submit", "-p", "upper", "--batch-size", "100")
		if r.code != 0 {
			return fmt.Errorf("submit: exit %d, stderr %q", r.code, r.stderr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if lines := parseOutput(t, r.stdout); len(lines) != n {
		t.Fatalf("%d output lines, want %d", len(lines), n)
	}

	// The worker counts a batch once it is acknowledged, just after its
	// results are stored: poll.
	err = poll.Until(context.Background(), 10*time.Second, func() error {
		got := sum(scrape(t, "http://"+workHTTP+"/metrics"), "dataflare_records_processed_total", "", "")
		if got != n {
			return fmt.Errorf("worker: dataflare_records_processed_total sums to %v, want %d", got, n)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	wm := scrape(t, "http://"+workHTTP+"/metrics")
	if got := sum(wm, "dataflare_records_processed_total", "outcome", "succeeded"); got != n {
		t.Errorf("worker: %v records succeeded, want %d", got, n)
	}
	if got := sum(wm, "dataflare_batches_processed_total", "", ""); got != n/100 {
		t.Errorf("worker: %v batches, want %d", got, n/100)
	}
	cm := scrape(t, "http://"+coordHTTP+"/metrics")
	if got := sum(cm, "dataflare_coordinator_sealed_records_total", "", ""); got != n {
		t.Errorf("coordinator: dataflare_coordinator_sealed_records_total = %v, want %d", got, n)
	}
	for name := range cm {
		if !strings.HasPrefix(name, "dataflare_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") &&
			!strings.HasPrefix(name, "promhttp_") {
			t.Errorf("coordinator metric %s lacks the dataflare_ prefix", name)
		}
	}

	// A WebAssembly plugin: pushed, fetched by the worker, run.
	if r := run(t, url, "", "plugin", "push", "upper-test", testModule); r.code != 0 {
		t.Fatalf("plugin push: exit %d, stderr %q", r.code, r.stderr)
	}
	checkSameAsUpper(t, url, "upper-test")
	if got := sum(scrape(t, "http://"+workHTTP+"/metrics"), "dataflare_wasm_module_loads_total", "", ""); got != 1 {
		t.Errorf("worker: dataflare_wasm_module_loads_total = %v, want 1", got)
	}

	// SIGTERM drains the worker, then stops the coordinator; both exit 0.
	if code := work.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("worker exit %d after SIGTERM, want 0; stderr %q", code, work.stderr)
	}
	if code := coord.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("coordinator exit %d after SIGTERM, want 0; stderr %q", code, coord.stderr)
	}
}

// testModule is a WebAssembly plugin that upper-cases ASCII, as upper does.
const testModule = "../../wasm/testdata/abi_upper.wasm"

// checkSameAsUpper submits the same lines to the native upper and to the
// WebAssembly plugin name, and checks that the outputs are identical.
func checkSameAsUpper(t *testing.T, url, name string) {
	t.Helper()
	var in strings.Builder
	for i := range 500 {
		fmt.Fprintf(&in, "Line %d: mixed Case \xff\n", i)
	}
	native := run(t, url, in.String(), "submit", "-p", "upper", "--batch-size", "50")
	guest := run(t, url, in.String(), "submit", "-p", name, "--batch-size", "50")
	if native.code != 0 || guest.code != 0 {
		t.Fatalf("exit %d (upper), %d (%s); stderr %q, %q", native.code, guest.code, name, native.stderr, guest.stderr)
	}
	if len(parseOutput(t, guest.stdout)) != 500 {
		t.Fatalf("%s: not 500 output lines", name)
	}
	if native.stdout != guest.stdout {
		t.Errorf("%s's output differs from upper's", name)
	}
}

// TestDev runs 'dataflare dev' and uses it as a user would.
func TestDev(t *testing.T) {
	dev := start(t, "", "dev", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--workers", "2")
	url := dev.waitFor(t, false, regexp.MustCompile(`NATS at (nats://\S+) \(2 workers; WebAssembly plugins: \[upper-wasm\]\)`))[1]
	metrics := dev.waitFor(t, false, regexp.MustCompile(`metrics at (http://\S+/metrics)`))[1]
	checkConsole(t, strings.TrimSuffix(strings.TrimPrefix(metrics, "http://"), "/metrics"), "worker-1")
	dir := t.TempDir()

	t.Run("submit in order", func(t *testing.T) {
		in := filepath.Join(dir, "in.txt")
		var b strings.Builder
		for i := range 3000 {
			fmt.Fprintf(&b, "rec %d\n", i)
		}
		if err := os.WriteFile(in, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		r := run(t, url, "", "submit", "--plugin", "upper", "--in", in, "--batch-size", "13")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("exit %d, stderr %q; want 0 and nothing", r.code, r.stderr)
		}
		lines := parseOutput(t, r.stdout)
		if len(lines) != 3000 {
			t.Fatalf("%d output lines, want 3000", len(lines))
		}
		for i, l := range lines {
			if want := fmt.Sprintf("REC %d", i); l.Value == nil || *l.Value != want {
				t.Fatalf("line %d: %+v, want value %q", i, l, want)
			}
		}
	})

	t.Run("client build", func(t *testing.T) {
		// The commands that use a fleet, without those that run one: the
		// same submit, from a binary that links no server, runtime or
		// exporter.
		cbin := filepath.Join(t.TempDir(), "dataflare-client")
		if out, err := exec.Command("go", "build", "-tags", "client", "-o", cbin, ".").CombinedOutput(); err != nil {
			t.Fatalf("go build -tags client: %v\n%s", err, out)
		}
		deps, err := exec.Command("go", "list", "-tags", "client", "-deps", ".").Output()
		if err != nil {
			t.Fatalf("go list -deps: %v", err)
		}
		for _, heavy := range []string{"github.com/tetratelabs/wazero", "github.com/nats-io/nats-server/v2/server",
			"github.com/prometheus/client_golang/prometheus", "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp",
			"github.com/dataflare/dataflare/worker", "github.com/dataflare/dataflare/coordinator"} {
			if slices.Contains(strings.Fields(string(deps)), heavy) {
				t.Errorf("the client build links %s", heavy)
			}
		}
		in := "alpha\n\xffbeta\n\ngamma\n"
		full := run(t, url, in, "submit", "-p", "upper")
		saved := bin
		bin = cbin
		defer func() { bin = saved }()
		slim := run(t, url, in, "submit", "-p", "upper")
		if slim.code != 0 || slim.stdout != full.stdout || full.stdout == "" {
			t.Errorf("client build: exit %d, stdout %q, stderr %q; want 0 and the full build's %q", slim.code, slim.stdout, slim.stderr, full.stdout)
		}
		help := run(t, url, "", "--help")
		_, commands, _ := strings.Cut(help.stdout, "Available Commands:")
		if !strings.Contains(commands, "\n  submit ") || strings.Contains(commands, "\n  coordinator ") {
			t.Errorf("client build's help lists:\n%s\nwant submit, no coordinator", commands)
		}
		if r := run(t, url, "", "dev"); r.code != 2 || !strings.Contains(r.stderr, "unknown command") {
			t.Errorf("client build's dev: exit %d, stderr %q; want 2 and unknown command", r.code, r.stderr)
		}
		traced := runEnv(t, append(environ(url), "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318"), "a\n", "submit", "-p", "upper")
		if traced.code != 1 || !strings.Contains(traced.stderr, "OTEL_TRACES_EXPORTER=none") {
			t.Errorf("client build asked for traces: exit %d, stderr %q; want 1 and how to go on", traced.code, traced.stderr)
		}
	})

	t.Run("record errors exit 3", func(t *testing.T) {
		r := run(t, url, "ok\nbad\nok\n", "submit", "-p", "fail", "-c", "match=bad")
		if r.code != 3 {
			t.Fatalf("exit %d, want 3; stderr %q", r.code, r.stderr)
		}
		lines := parseOutput(t, r.stdout)
		if len(lines) != 3 || lines[1].Error == nil || lines[0].Value == nil || lines[2].Value == nil {
			t.Errorf("output %q: want values, an error, a value", r.stdout)
		}
	})

	t.Run("malformed jsonl line", func(t *testing.T) {
		r := run(t, url, `{"value":"a"}`+"\n"+`{"value":`+"\n"+`{"value":"c"}`+"\n", "submit", "-p", "upper", "--format", "jsonl")
		if r.code != 3 {
			t.Fatalf("exit %d, want 3; stderr %q", r.code, r.stderr)
		}
		lines := parseOutput(t, r.stdout)
		if len(lines) != 3 || lines[1].Error == nil || !strings.HasPrefix(*lines[1].Error, "line 2: ") || *lines[2].Value != "C" {
			t.Errorf("output %q: want A, an error for line 2, C", r.stdout)
		}
	})

	t.Run("unknown plugin", func(t *testing.T) {
		r := run(t, url, "x\n", "submit", "-p", "no-such-plugin")
		if r.code != 1 {
			t.Fatalf("exit %d, want 1; stderr %q", r.code, r.stderr)
		}
		checkOneLine(t, r, "unknown plugin no-such-plugin")
	})

	t.Run("status", func(t *testing.T) {
		r := run(t, url, "", "status")
		if r.code != 0 || !strings.Contains(r.stdout, "worker-1") || !strings.Contains(r.stdout, "PLUGIN") {
			t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		r = run(t, url, "", "status", "--json")
		var st struct {
			Workers []struct {
				ID string `json:"id"`
			} `json:"workers"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Workers) != 2 {
			t.Errorf("status --json: %v, %d workers; stdout %q", err, len(st.Workers), r.stdout)
		}
	})

	t.Run("report", func(t *testing.T) {
		out := filepath.Join(dir, "report.json")
		r := run(t, url, "", "report", "--out", out)
		if r.code != 0 {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(data) {
			t.Errorf("report is not JSON: %q", data)
		}
	})

	t.Run("interrupt", func(t *testing.T) {
		var in strings.Builder
		for i := range 2000 {
			fmt.Fprintf(&in, "%d\n", i)
		}
		sub := exec.Command(bin, "submit", "-p", "delay", "-c", "ms=5", "--batch-size", "10")
		sub.Env = environ(url)
		sub.Stdin = strings.NewReader(in.String())
		var errb bytes.Buffer
		sub.Stderr = &errb
		stdout, err := sub.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.Start(); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(stdout)
		first, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("no first result: %v; stderr %q", err, errb.String())
		}
		sub.Process.Signal(os.Interrupt)
		rest, _ := io.ReadAll(br)
		err = sub.Wait()
		if code := sub.ProcessState.ExitCode(); code != 1 {
			t.Fatalf("exit %d after SIGINT (%v), want 1; stderr %q", code, err, errb.String())
		}
		lines := parseOutput(t, first+string(rest))
		if len(lines) == 0 || len(lines) >= 2000 {
			t.Errorf("%d results written before the interrupt, want some but not all", len(lines))
		}
		want := regexp.MustCompile(fmt.Sprintf(`^dataflare: interrupted after %d results; job \S+ cancelled\n$`, len(lines)))
		if !want.MatchString(errb.String()) {
			t.Errorf("stderr %q, want it to match %s", errb.String(), want)
		}
	})

	t.Run("wasm plugin", func(t *testing.T) {
		r := run(t, url, "", "plugin", "push", "upper-test", testModule, "--version", "1.0.0")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "pushed upper-test@1.0.0 sha256:") {
			t.Fatalf("plugin push: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		checkSameAsUpper(t, url, "upper-test")
	})

	t.Run("example wasm plugin", func(t *testing.T) {
		checkSameAsUpper(t, url, "upper-wasm")
		r := run(t, url, "", "plugin", "info", "upper-wasm")
		if r.code != 0 || !strings.Contains(r.stdout, "WebAssembly twin of upper") {
			t.Errorf("plugin info upper-wasm: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		fams := scrape(t, metrics)
		if got := sum(fams, "dataflare_records_processed_total", "plugin", "upper"); got < 3000 {
			t.Errorf("dataflare_records_processed_total{plugin=upper} = %v, want at least 3000", got)
		}
		healthz(t, strings.TrimSuffix(strings.TrimPrefix(metrics, "http://"), "/metrics"))
	})

	if code := dev.stop(t, os.Interrupt); code != 0 {
		t.Errorf("dev exit %d after SIGINT, want 0; stderr %q", code, dev.stderr)
	}
	dev.waitFor(t, false, regexp.MustCompile(`dataflare dev: stopping`))
}
