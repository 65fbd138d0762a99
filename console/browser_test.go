//go:build browser

package console

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/plugin/builtin/twins"
	"github.com/dataflare/dataflare/worker"
)

// The browser tests drive Debian's headless Chromium against a console on
// a real local fleet (embedded nats-server, coordinator, workers) and check
// what the browser made of each page. They write the screenshots of
// docs/console.md to docs/console/.
//
//	go test -tags browser ./console/...

// screenshots is where the screenshots go.
const screenshots = "../docs/console"

// chromium runs the browser headless, each call in a profile of its own.
type chromium struct {
	path string
	t    *testing.T
}

func newChromium(t *testing.T) *chromium {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return &chromium{path: p, t: t}
		}
	}
	t.Fatal("no chromium on PATH: apt-get install chromium (.ci/run does)")
	return nil
}

// run runs the browser with args and returns its standard output.
func (c *chromium) run(args ...string) []byte {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args = append([]string{"--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir=" + c.t.TempDir()}, args...)
	cmd := exec.CommandContext(ctx, c.path, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("chromium %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out.Bytes()
}

// dom returns the DOM of url once loaded, as the browser serializes it;
// flags go to the browser.
func (c *chromium) dom(url string, flags ...string) string {
	c.t.Helper()
	return string(c.run(append(flags, "--dump-dom", url)...))
}

// screenshot saves url, the window w×h, as docs/console/name.png.
func (c *chromium) screenshot(url, name string, w, h int) {
	c.t.Helper()
	file, err := filepath.Abs(filepath.Join(screenshots, name+".png"))
	if err != nil {
		c.t.Fatal(err)
	}
	c.run(fmt.Sprintf("--window-size=%d,%d", w, h), "--screenshot="+file, url)
	if st, err := os.Stat(file); err != nil || st.Size() < 10_000 {
		c.t.Fatalf("screenshot %s: %v (%v)", file, err, st)
	}
}

// hostile is in a record's value and in the error the plugin gives it.
const hostileValue = `<script>alert(1)</script>`

// parser is a native plugin that fails its whole batch when a record's
// value starts with "{", as a parser that a malformed record crashes: the
// worker isolates the record and dead-letters it. Its error quotes the
// record.
type parser struct{}

func (parser) Info() plugin.Info {
	return plugin.Info{Name: "parse", Version: "1.0.0", Type: plugin.Transformer, Description: "parses key=value lines; malformed ones crash it", APIVersion: plugin.APIVersion}
}

func (parser) ProcessBatch(ctx context.Context, _ plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	out := make([]plugin.Result, len(recs))
	for i, r := range recs {
		if bytes.HasPrefix(r.Value, []byte("{")) {
			return nil, fmt.Errorf("parse: unexpected %q at offset 0", r.Value)
		}
		out[i].Value = r.Value
	}
	return &plugin.BatchResult{Results: out}, nil
}

// stack is a local fleet with history: jobs run, records failed, dead
// letters, a pipeline, a dead worker.
type stack struct {
	f       *localtest.Fleet
	c       *client.Client
	js      jetstream.JetStream
	console *Console
	url     string
	// fragments counts the script's refreshes.
	fragments atomic.Int64
}

func startStack(t *testing.T) *stack {
	plugins := builtin.All()
	plugins["parse"] = parser{}
	f := localtest.Start(t, local.Config{Workers: 3, Worker: worker.Config{Parallel: 2, Plugins: plugins}})
	ctx := t.Context()
	if _, err := f.Push(ctx, twins.UpperName, twins.Upper); err != nil {
		t.Fatal(err)
	}
	s := &stack{f: f, c: f.Client()}
	var err error
	if s.js, err = jetstream.New(f.Connect()); err != nil {
		t.Fatal(err)
	}
	if s.console, err = New(Config{Backend: NewClientBackend(s.c, s.js), Admin: true, Interval: 250 * time.Millisecond, Window: time.Minute}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	// Stops when the test ends.
	go func() { defer close(done); s.console.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(fragmentHeader) != "" {
			s.fragments.Add(1)
		}
		s.console.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// records returns n log lines; those with bad(i) are malformed.
func records(n int, bad func(int) bool) []plugin.Record {
	recs := make([]plugin.Record, n)
	for i := range recs {
		v := fmt.Sprintf("ts=%d level=info user=u%d action=view latency_ms=%d", i, i%97, i%300)
		if bad(i) {
			v = fmt.Sprintf("{%d %s", i, hostileValue)
		}
		recs[i] = plugin.Record{Value: []byte(v)}
	}
	return recs
}

// paced yields the records of records(n, bad) at about perSec a second:
// the shape of a load, for the charts.
func paced(n, perSec int, bad func(int) bool) client.Source {
	recs := records(n, bad)
	return func(yield func(plugin.Record, error) bool) {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		per := max(perSec/10, 1)
		for i, r := range recs {
			if i > 0 && i%per == 0 {
				<-tick.C
			}
			if !yield(r, nil) {
				return
			}
		}
	}
}

// run runs a job to its end and returns its id and summary.
func (s *stack) run(t *testing.T, name string, src client.Source, opts ...client.SubmitOption) (string, client.Summary) {
	t.Helper()
	job, err := s.c.Submit(t.Context(), name, src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := job.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return job.ID(), sum
}

// submit starts a job and leaves it running, its results read as they
// come (so that its submitter sends every batch) until it ends.
func (s *stack) submit(t *testing.T, name string, recs []plugin.Record, opts ...client.SubmitOption) string {
	t.Helper()
	job, err := s.c.Submit(context.Background(), name, client.Records(recs), opts...)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	// Stops when the job ends: done, or cancelled by the test.
	go func() { defer close(done); job.Wait() }()
	t.Cleanup(func() { job.Close(); <-done })
	return job.ID()
}

// pipeline makes a source stream with n orders and a pipeline over it.
func (s *stack) pipeline(t *testing.T, n int) {
	t.Helper()
	ctx := t.Context()
	for _, sc := range []jetstream.StreamConfig{
		{Name: "ORDERS", Subjects: []string{"orders.>"}},
		{Name: "ENRICHED", Subjects: []string{"enriched.out"}},
	} {
		if _, err := s.js.CreateOrUpdateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	// In windows of 1,000: the client holds at most 4,000 unacknowledged.
	for from := 0; from < n; from += 1000 {
		for i := from; i < min(from+1000, n); i++ {
			if _, err := s.js.PublishAsync(fmt.Sprintf("orders.eu.%d", i%5), fmt.Appendf(nil, "order-%06d", i)); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-s.js.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	spec := client.PipelineSpec{Source: "ORDERS", Sink: "enriched.out", Steps: []client.Step{
		{Plugin: "delay", Config: plugin.Config{"ms": "3"}}, {Plugin: "upper"}}}
	if _, err := s.c.CreatePipeline(ctx, "enrich-orders", spec); err != nil {
		t.Fatal(err)
	}
}

// waitHealth waits until the coordinator sees worker as h.
func (s *stack) waitHealth(t *testing.T, id string, h fleet.Health) {
	t.Helper()
	poll.Wait(t, 30*time.Second, id+" to be "+h.String(), func() bool {
		st, err := s.c.SystemStatus(t.Context())
		if err != nil {
			return false
		}
		for _, w := range st.Workers {
			if w.ID == id {
				return w.Health == h
			}
		}
		return false
	})
}

// contains fails t unless the DOM matches every pattern.
func contains(t *testing.T, page, dom string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(dom) {
			t.Errorf("%s: the DOM does not match %q", page, p)
		}
	}
}

func TestConsoleInChromium(t *testing.T) {
	browser := newChromium(t)
	if err := os.MkdirAll(screenshots, 0o755); err != nil {
		t.Fatal(err)
	}
	s := startStack(t)

	// A minute of a fleet's life: a pipeline with a backlog, jobs of
	// native and WebAssembly plugins, records that fail, records that
	// crash their plugin (dead letters), a worker that dies, and a long
	// job that another waits behind.
	none := func(int) bool { return false }
	s.pipeline(t, 8000)
	var g errgroup.Group
	g.Go(func() error { s.run(t, "upper", paced(200_000, 20_000, none)); return nil })
	g.Go(func() error { s.run(t, "upper-wasm", paced(100_000, 12_000, none)); return nil })
	g.Wait()
	s.run(t, "fail", paced(40_000, 10_000, none), client.WithConfig(plugin.Config{"match": "user=u13 "}))
	parseJob, sum := s.run(t, "parse", client.Records(records(5_000, func(i int) bool { return i%1000 == 17 })))
	if sum.Failed != 5 {
		t.Fatalf("parse: %d records failed, want 5", sum.Failed)
	}
	s.f.Kill("worker-3")
	s.waitHealth(t, "worker-3", fleet.Dead)
	poll.Wait(t, 30*time.Second, "the dead letters to be counted", func() bool {
		st, err := s.c.SystemStatus(t.Context())
		return err == nil && st.DeadLetters >= 5
	})
	// Batches of 20 s, hours of them: the job behind waits for minutes,
	// and this one runs until the console cancels it.
	long := s.submit(t, "delay", records(100_000, none), client.WithConfig(plugin.Config{"ms": "200"}), client.WithBatchSize(100))
	behind := s.submit(t, "upper", records(20_000, none))
	poll.Wait(t, 30*time.Second, "a job to wait behind the long one", func() bool {
		a, errA := s.c.JobInfo(t.Context(), long)
		b, errB := s.c.JobInfo(t.Context(), behind)
		return errA == nil && errB == nil && a.QueuedBatches > 0 && b.QueuedBatches > 0
	})

	t.Run("fleet", func(t *testing.T) {
		dom := browser.dom(s.url + "/")
		contains(t, "/", dom,
			`<tr class="h-bad" id="worker-worker-3" data-health="dead">`,
			`Worker worker-3 is dead: its last heartbeat was \d+(\.\d)?s ago`,
			`<tr class="h-ok" id="worker-worker-1" data-health="healthy">`,
			`id="healthy-workers">2<small> of 3</small>`,
			`<figcaption>Throughput, records/s</figcaption>`,
			`<polyline points="[0-9., ]+" stroke="`+colour("upper")+`"`,
			`<span class="name">upper-wasm</span>`,
			`<span class="label">Dead letters</span><span class="value">[1-9]`,
			`<b>parse</b>`,
			`<span class="live" id="live">live</span>`, // the script ran
		)
		browser.screenshot(s.url+"/", "fleet", 1280, 1500)
	})

	t.Run("jobs", func(t *testing.T) {
		dom := browser.dom(s.url + "/jobs")
		contains(t, "/jobs", dom,
			`<tr id="job-`+regexp.QuoteMeta(behind)+`" class="h-warn">`,
			`[\d,]+ batches queued behind `+regexp.QuoteMeta(long)+` \(delay, [\d,]+ batches queued\)`,
			`(?s)<tr id="job-`+regexp.QuoteMeta(parseJob)+`">.*?<span class="badge ok">done</span>.*?<td class="num errtext">5</td>`,
			`<span class="progress"`,
		)
		browser.screenshot(s.url+"/jobs", "jobs", 1280, 900)
	})

	t.Run("job", func(t *testing.T) {
		dom := browser.dom(s.url + "/jobs/" + behind)
		contains(t, "/jobs/ID", dom,
			`Stuck: [\d,]+ batches queued behind `+regexp.QuoteMeta(long),
			`<button class="danger" type="submit">Cancel job</button>`,
			`<dt>Batches queued</dt><dd>[1-9]`,
			`<dt>Trace</dt>`,
		)
		browser.screenshot(s.url+"/jobs/"+behind, "job-stuck", 1280, 900)
		dom = browser.dom(s.url + "/jobs/" + parseJob)
		contains(t, "/jobs/ID of the parse job", dom,
			`<h2>Why records failed</h2>`,
			`<button class="primary" type="submit">Replay 5 dead letters</button>`,
			// The record and the error hold a script: the browser shows
			// it as text.
			`<pre class="value">\{17 &lt;script&gt;alert\(1\)&lt;/script&gt;</pre>`,
			`parse: unexpected "\{1017 &lt;script&gt;alert\(1\)&lt;/script&gt;" at offset 0`,
		)
		if strings.Contains(dom, hostileValue) {
			t.Errorf("/jobs/%s: the DOM holds %s as markup", parseJob, hostileValue)
		}
		browser.screenshot(s.url+"/jobs/"+parseJob, "job-failed", 1280, 1100)
	})

	t.Run("cancel", func(t *testing.T) {
		// The button's request, as its form sends it.
		for _, id := range []string{long} {
			res, err := http.PostForm(s.url+"/jobs/"+id+"/cancel", nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "The job is cancelled") {
				t.Errorf("cancel %s: %d\n%s", id, res.StatusCode, body)
			}
			if info, err := s.c.JobInfo(t.Context(), id); err != nil || info.State != client.JobCancelled {
				t.Errorf("after the console's cancel, job %s: %+v, %v", id, info, err)
			}
		}
	})

	t.Run("live", func(t *testing.T) {
		// Given 5 s of the page's time, the script fetches its content
		// twice and swaps it in: the DOM still shows the fleet.
		before := s.fragments.Load()
		dom := browser.dom(s.url+"/", "--virtual-time-budget=5000")
		if n := s.fragments.Load() - before; n < 1 {
			t.Errorf("the script fetched the page's content %d times in 5 s", n)
		}
		contains(t, "/ refreshed", dom, `id="healthy-workers">2<small> of [23]</small>`, `<span class="live" id="live">live</span>`)
	})

	t.Run("plugins", func(t *testing.T) {
		dom := browser.dom(s.url + "/plugins")
		contains(t, "/plugins", dom,
			`<b>upper-wasm</b>`,
			`<code>1\.0\.0</code>`,
			`<span class="badge ok">loaded</span>`,
			`(?s)<tr id="plugin-fail">.*?<td class="num errtext">[1-9][0-9,]*</td>`,
			`parses key=value lines; malformed ones crash it`,
		)
		browser.screenshot(s.url+"/plugins", "plugins", 1280, 900)
	})

	t.Run("pipelines", func(t *testing.T) {
		dom := browser.dom(s.url + "/pipelines")
		contains(t, "/pipelines", dom,
			`<tr id="pipeline-enrich-orders">`,
			`<span class="badge ok">running</span>`,
			`<code>ORDERS</code>`,
			`<span class="chip">delay</span> → <span class="chip">upper</span>`,
			`<figcaption>Lag, source messages not yet in the sink</figcaption>`,
			`<polyline points="[0-9., ]+" stroke="`+colour("anon/enrich-orders")+`"`,
		)
		browser.screenshot(s.url+"/pipelines", "pipelines", 1280, 900)
	})

	t.Run("dead", func(t *testing.T) {
		dom := browser.dom(s.url + "/dead")
		contains(t, "/dead", dom,
			`(?s)<td class="num"><b>5</b></td><td class="error">parse: unexpected .*?and others like it: parse: unexpected "…" at offset N`,
			`<button class="primary" type="submit">Replay `+regexp.QuoteMeta(parseJob)+`</button>`,
			`<pre class="value">\{4017 &lt;script&gt;alert\(1\)&lt;/script&gt;</pre>`,
		)
		if strings.Contains(dom, hostileValue) {
			t.Errorf("/dead: the DOM holds %s as markup", hostileValue)
		}
		browser.screenshot(s.url+"/dead", "dead", 1280, 1000)
	})

	t.Run("replay", func(t *testing.T) {
		// The button's request, as its form sends it.
		res, err := http.PostForm(s.url+"/dead/replay", url.Values{"job": {parseJob}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "0 of 5 records succeed now; 5 fail again") {
			t.Errorf("replay: %d\n%s", res.StatusCode, body)
		}
	})
}
