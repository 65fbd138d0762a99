package console

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/wasmstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.LeakOptions()...) }

// hostile is a string from a user that must reach the page as text.
const hostile = `<script>alert(1)</script>`

// stubBackend returns fixed data: for the pure logic of rendering.
type stubBackend struct {
	status    *fleet.Status
	modules   []wasmstore.Manifest
	pipelines []client.Pipeline
	jobs      []client.JobInfo
	dead      []client.DeadLetterInfo
	err       error

	mu        sync.Mutex
	cancelled []string
	replayed  []string
}

func (b *stubBackend) Status(context.Context) (*fleet.Status, error) {
	if b.err != nil {
		return nil, b.err
	}
	return b.status, nil
}

func (b *stubBackend) Modules(context.Context) ([]wasmstore.Manifest, error) { return b.modules, b.err }

func (b *stubBackend) Pipelines(context.Context) ([]client.Pipeline, error) {
	return b.pipelines, b.err
}

func (b *stubBackend) Jobs(context.Context) ([]client.JobInfo, error) { return b.jobs, b.err }

func (b *stubBackend) JobInfo(_ context.Context, id string) (*client.JobInfo, error) {
	for _, j := range b.jobs {
		if j.ID == id {
			return &j, b.err
		}
	}
	return nil, client.ErrJobNotFound
}

func (b *stubBackend) CancelJob(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cancelled = append(b.cancelled, id)
	return b.err
}

func (b *stubBackend) DeadLetters(_ context.Context, f client.DeadFilter) ([]client.DeadLetterInfo, error) {
	var out []client.DeadLetterInfo
	for _, d := range b.dead {
		if f.Job == "" || d.Job == f.Job {
			out = append(out, d)
		}
	}
	return out, b.err
}

func (b *stubBackend) Replay(_ context.Context, spec client.ReplaySpec) (*client.ReplayReport, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.replayed = append(b.replayed, spec.Job)
	rep := &client.ReplayReport{Jobs: []string{"anon.r1"}}
	for _, d := range b.dead {
		if d.Job == spec.Job {
			rep.Records = append(rep.Records, client.ReplayRecord{DeadLetter: d.ID, Job: d.Job, Index: d.Index, Replay: "anon.r1", Err: errors.New(d.Error)})
			rep.Failed++
		}
	}
	return rep, b.err
}

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// hostileBackend names a worker, a plugin, a module and a pipeline with
// hostile strings, and gives them hostile errors.
func hostileBackend() *stubBackend {
	return &stubBackend{
		status: &fleet.Status{
			Coordinator: "coordinator-1", At: t0,
			Workers: []fleet.Worker{
				{ID: "worker-1", Health: fleet.Healthy, Parallel: 4, InFlight: 2, Plugins: []string{hostile, "upper"}, LastHeartbeat: t0},
				{ID: "worker-2", Health: fleet.Dead, Parallel: 4, InFlight: 1, Age: 12 * time.Second, LastHeartbeat: t0.Add(-12 * time.Second),
					Breakers: []fleet.PluginBreaker{{Plugin: hostile, Breaker: fleet.Breaker{State: fleet.BreakerOpen, Since: t0}}}},
			},
			Plugins: []fleet.Plugin{{Name: hostile, Workers: 1, BatchSize: 100,
				Metrics: fleet.PluginMetrics{TotalProcessed: 10, Failed: 3, Health: fleet.Degraded, HealthReason: hostile}}},
			Queues: []fleet.Queue{{Owner: hostile, Priority: fleet.Normal, Weight: 1, Pending: 3}},
		},
		modules: []wasmstore.Manifest{{Name: "upper-wasm", Version: hostile, Digest: "sha256:0123456789abcdef", Size: 2048,
			Info: plugin.Info{Name: "upper-wasm", Description: hostile}, Created: t0,
			Policy: wasmstore.Policy{Timeout: 50 * time.Millisecond, Grants: []string{"kv:users", "log"}}, Signer: hostile}},
		pipelines: []client.Pipeline{{Name: "p1", Owner: hostile, Spec: client.PipelineSpec{Source: hostile, Sink: "out.x", Steps: []client.Step{{Plugin: hostile}}},
			Status: &client.PipelineStatus{State: hostile, Lag: 7}}},
		jobs: []client.JobInfo{
			{ID: "anon.j1", Owner: "anon", Plugin: "upper", State: client.JobSealed, Created: t0.Add(-time.Minute), Records: 100, Batches: 4,
				Counted: true, Results: 50, Succeeded: 40, Failed: 10, QueuedBatches: 2, DeadLetters: 1, Config: map[string]string{"match": hostile}},
			{ID: "anon.j2", Owner: "anon", Plugin: "upper", State: client.JobSealed, Created: t0, Records: 10, Batches: 1, QueuedBatches: 1},
			{ID: "anon.j0", Owner: "anon", Plugin: hostile, State: client.JobDone, Created: t0.Add(-time.Hour), Records: 10, Counted: true, Results: 10, Succeeded: 10},
		},
		dead: []client.DeadLetterInfo{{ID: "anon.5", Owner: "anon", Job: "anon.j1", Index: 7, Plugin: "upper", Error: "parse: " + hostile,
			Value: []byte(hostile), ValueBytes: len(hostile), Attempts: 4, At: t0}},
	}
}

// newTest returns a console on b and a server for it.
func newTest(t *testing.T, b Backend, admin bool) (*Console, *httptest.Server) {
	t.Helper()
	c, err := New(Config{Backend: b, Admin: admin, Clock: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, srv
}

// get returns the status and body of GET path.
func get(t *testing.T, srv *httptest.Server, path string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestPagesEscapeWhatUsersWrote(t *testing.T) {
	c, srv := newTest(t, hostileBackend(), true)
	// Two samples, so that the charts draw the hostile plugin and pipeline.
	for range 2 {
		if err := c.sample(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	escaped := "&lt;script&gt;alert(1)&lt;/script&gt;"
	for _, path := range []string{"/", "/plugins", "/pipelines", "/jobs", "/jobs/anon.j1", "/dead"} {
		t.Run(path, func(t *testing.T) {
			code, body := get(t, srv, path)
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d\n%s", path, code, body)
			}
			if strings.Contains(body, hostile) {
				t.Errorf("GET %s: the page holds %s unescaped", path, hostile)
			}
			if !strings.Contains(body, escaped) {
				t.Errorf("GET %s: the page does not show %s escaped", path, hostile)
			}
		})
	}
}

// The plugins page shows each module's policy and signer.
func TestPluginsPageShowsPolicy(t *testing.T) {
	_, srv := newTest(t, hostileBackend(), false)
	_, body := get(t, srv, "/plugins")
	for _, want := range []string{"timeout 50ms, grants kv:users log", "<th>Signed by</th>"} {
		if !strings.Contains(body, want) {
			t.Errorf("the plugins page does not show %q", want)
		}
	}
}

func TestBackendErrorShown(t *testing.T) {
	_, srv := newTest(t, &stubBackend{err: errors.New("no coordinator answers " + hostile)}, false)
	code, body := get(t, srv, "/")
	if code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", code)
	}
	if !strings.Contains(body, "no coordinator answers &lt;script&gt;") {
		t.Errorf("the page does not say why it is empty:\n%s", body)
	}
}

func TestFleetPageMarksDeadWorker(t *testing.T) {
	_, srv := newTest(t, hostileBackend(), false)
	_, body := get(t, srv, "/")
	for _, want := range []string{
		`<tr class="h-bad" id="worker-worker-2" data-health="dead">`,
		`Worker worker-2 is dead: its last heartbeat was 12s ago`,
		`<tr class="h-ok" id="worker-worker-1" data-health="healthy">`,
		`is out of service on worker worker-2`,
		`id="healthy-workers">1<small> of 2</small>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the fleet page lacks %q", want)
		}
	}
}

func TestFragment(t *testing.T) {
	_, srv := newTest(t, hostileBackend(), false)
	_, whole := get(t, srv, "/plugins")
	_, part := get(t, srv, "/plugins", fragmentHeader, "1")
	if !strings.HasPrefix(whole, "<!doctype html>") {
		t.Errorf("the page does not start with a doctype: %.60q", whole)
	}
	if strings.Contains(part, "<html") || strings.Contains(part, "<nav") {
		t.Errorf("the fragment holds the layout: %.200q", part)
	}
	if !strings.Contains(part, "Stored modules") {
		t.Errorf("the fragment lacks the page's content: %.200q", part)
	}
	// The script refreshes pages that ask for it, not those of an error
	// or an action's outcome.
	if !strings.Contains(whole, `<main id="content" data-live>`) {
		t.Error("the plugins page is not refreshed live")
	}
	if _, missing := get(t, srv, "/nothing"); !strings.Contains(missing, `<main id="content">`) {
		t.Error("the not-found page is refreshed live")
	}
}

func TestReadOnlyRefusesChanges(t *testing.T) {
	for _, admin := range []bool{false, true} {
		b := hostileBackend()
		_, srv := newTest(t, b, admin)
		// Do not follow the redirect after a cancel.
		hc := *srv.Client()
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		cancel, err := hc.Post(srv.URL+"/jobs/anon.j1/cancel", "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Fatal(err)
		}
		cancel.Body.Close()
		replay, err := hc.PostForm(srv.URL+"/dead/replay", url.Values{"job": {"anon.j1"}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(replay.Body)
		replay.Body.Close()
		_, page := get(t, srv, "/jobs/anon.j1")
		hasButtons := strings.Contains(page, "Cancel job") && strings.Contains(page, "Replay 1 dead letters")
		switch {
		case !admin && (cancel.StatusCode != http.StatusForbidden || replay.StatusCode != http.StatusForbidden):
			t.Errorf("read-only: cancel %d, replay %d; want 403", cancel.StatusCode, replay.StatusCode)
		case !admin && (len(b.cancelled) != 0 || len(b.replayed) != 0 || hasButtons):
			t.Errorf("read-only: cancelled %v, replayed %v, buttons %v", b.cancelled, b.replayed, hasButtons)
		case admin && (cancel.StatusCode != http.StatusSeeOther || cancel.Header.Get("Location") != "/jobs/anon.j1?cancelled"):
			t.Errorf("admin: cancel %d to %q, want 303 to the job", cancel.StatusCode, cancel.Header.Get("Location"))
		case admin && (replay.StatusCode != http.StatusOK || !strings.Contains(string(body), "0 of 1 records succeed now; 1 fail again")):
			t.Errorf("admin: replay %d\n%s", replay.StatusCode, body)
		case admin && (!slices.Equal(b.cancelled, []string{"anon.j1"}) || !slices.Equal(b.replayed, []string{"anon.j1"}) || !hasButtons):
			t.Errorf("admin: cancelled %v, replayed %v, buttons %v", b.cancelled, b.replayed, hasButtons)
		}
	}
}

func TestJobsSayWhatHoldsThemUp(t *testing.T) {
	b := hostileBackend()
	_, srv := newTest(t, b, false)
	_, body := get(t, srv, "/jobs")
	// anon.j2 came after anon.j1, in the same queue, with every slot of
	// the only healthy worker busy? worker-1 runs 2 of 4: not stuck, but
	// queued behind anon.j1.
	for _, want := range []string{
		`1 batches queued behind anon.j1 (upper, 2 batches queued)`,
		`<tr id="job-anon.j0">`,
		`Finished <span class="muted">1</span>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the jobs page lacks %q", want)
		}
	}
	b.status.Workers[0].Health = fleet.Dead
	_, body = get(t, srv, "/jobs/anon.j2")
	if want := "Stuck: 1 batches wait: no healthy worker."; !strings.Contains(body, want) {
		t.Errorf("the page of a job without workers lacks %q", want)
	}
	_, body = get(t, srv, "/dead")
	if want := `<td class="num"><b>1</b></td><td class="error">parse: &lt;script&gt;`; !strings.Contains(body, want) {
		t.Errorf("the dead letters page does not group the error: lacks %q", want)
	}
}

func TestCrossOriginPOSTRefused(t *testing.T) {
	_, srv := newTest(t, hostileBackend(), true)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/jobs/j1/cancel", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site POST to an admin console answered %d, want 403", res.StatusCode)
	}
}

func TestAssetsAndSecurityHeaders(t *testing.T) {
	_, srv := newTest(t, hostileBackend(), false)
	for path, typ := range map[string]string{"/assets/console.css": "text/css", "/assets/console.js": "javascript", "/": "text/html"} {
		res, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Content-Type"), typ) {
			t.Errorf("GET %s: %d %s, want 200 %s", path, res.StatusCode, res.Header.Get("Content-Type"), typ)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	if code, _ := get(t, srv, "/nothing-here"); code != http.StatusNotFound {
		t.Errorf("GET /nothing-here: %d, want 404", code)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no backend":       {},
		"negative":         {Backend: &stubBackend{}, Interval: -time.Second},
		"window too short": {Backend: &stubBackend{}, Interval: time.Minute, Window: time.Minute},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: New: %v, want ErrInvalidConfig", name, err)
		}
	}
}
