package pdk_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/pdk/pdktest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/wasm"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func kitcheck(t *testing.T, opts ...wasm.Option) *wasm.Plugin {
	t.Helper()
	module := pdktest.Build(t, "./testdata/kitcheck")
	rt, err := wasm.NewRuntime(context.Background(), append([]wasm.Option{wasm.WithCacheDir(pdktest.CacheDir(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	start := time.Now()
	p, err := rt.Load(context.Background(), module)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Logf("loaded kitcheck (%d bytes) in %s", len(module), time.Since(start).Round(time.Millisecond))
	t.Cleanup(p.Close)
	return p
}

func one(t *testing.T, p *wasm.Plugin, cfg plugin.Config, value string) (plugin.Result, error) {
	t.Helper()
	res, err := p.ProcessBatch(context.Background(), cfg, []plugin.Record{{Value: []byte(value)}})
	if err != nil {
		return plugin.Result{}, err
	}
	return res.Results[0], nil
}

func TestGoPlugin(t *testing.T) {
	var out syncBuffer
	p := kitcheck(t, wasm.WithGuestOutput(&out))
	if got := p.Info(); got.Name != "kitcheck" || got.Version != "0.1.0" || got.APIVersion != plugin.APIVersion {
		t.Errorf("Info() = %+v", got)
	}
	recs := []plugin.Record{
		{Value: []byte("hello")}, {Value: []byte("same")}, {Value: []byte("drop")}, {Value: []byte("error")},
		{Value: []byte("panic")}, {Value: []byte("print:written by the guest")}, {Value: []byte("cfg")}, {Value: []byte("env")},
	}
	res, err := p.ProcessBatch(context.Background(), plugin.Config{"suffix": "!"}, recs)
	if err != nil {
		t.Fatal(err)
	}
	r := res.Results
	check := func(i int, ok bool, what string) {
		t.Helper()
		if !ok {
			t.Errorf("record %d (%s): got %+v, want %s", i, recs[i].Value, r[i], what)
		}
	}
	check(0, string(r[0].Value) == "hello" && r[0].Err == nil, "hello")
	check(1, &r[1].Value[0] == &recs[1].Value[0], "the input value itself (unchanged)")
	check(2, r[2].Dropped, "dropped")
	check(3, errors.Is(r[3].Err, plugin.ErrInvalidInput) && r[3].Err.Error() == "kitcheck: bad record", "an invalid-input error")
	check(4, errors.Is(r[4].Err, plugin.ErrPanic) && strings.Contains(r[4].Err.Error(), "assignment to entry in nil map"), "a panic error")
	check(5, string(r[5].Value) == "printed", "printed")
	check(6, string(r[6].Value) == "!", "the config suffix")
	check(7, string(r[7].Value) == "0 0", "no environment and no arguments")
	if got := out.String(); got != "written by the guest\n" {
		t.Errorf("guest output = %q", got)
	}
	// A configuration the plugin refuses fails the batch; the instance
	// stays.
	_, err = p.ProcessBatch(context.Background(), plugin.Config{"refuse": "yes"}, recs[:1])
	if !errors.Is(err, plugin.ErrInvalidInput) || err.Error() != "kitcheck: refusing configuration: yes" {
		t.Errorf("refused config: error = %v, want an invalid-input batch error", err)
	}
	if st := p.Stats(); st.Discarded != 0 {
		t.Errorf("Stats() = %+v, want no instance discarded", st)
	}
}

// A Go guest in a loop is stopped at the deadline; the next batch runs on a
// fresh instance (its Go runtime initialised again).
func TestGoPluginDeadline(t *testing.T) {
	p := kitcheck(t)
	const deadline = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err := p.ProcessBatch(ctx, nil, []plugin.Record{{Value: []byte("spin")}})
	elapsed := time.Since(start)
	if !errors.Is(err, plugin.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want plugin.ErrTimeout", err)
	}
	if elapsed > deadline+100*time.Millisecond {
		t.Errorf("batch failed after %s, want ≤ %s", elapsed, deadline+100*time.Millisecond)
	}
	if r, err := one(t, p, nil, "after"); err != nil || string(r.Value) != "after" {
		t.Errorf("next batch: %v, %v", r, err)
	}
}

// A Go guest that allocates past the page limit dies with the Go runtime's
// out-of-memory error, quoted in the batch error; the next batch runs.
func TestGoPluginMemoryLimit(t *testing.T) {
	p := kitcheck(t, wasm.WithMemoryLimitPages(512)) // 32 MiB
	if r, err := one(t, p, nil, "alloc:4"); err != nil || string(r.Value) != "ok" {
		t.Fatalf("4 MiB: %v, %v", r, err)
	}
	_, err := one(t, p, nil, "alloc:64")
	if !errors.Is(err, plugin.ErrTrap) {
		t.Fatalf("64 MiB: error = %v, want plugin.ErrTrap", err)
	}
	if !strings.Contains(err.Error(), "out of memory") || !strings.Contains(err.Error(), "512-page limit") {
		t.Errorf("error = %q, want it to say the guest ran out of memory at the page limit", err)
	}
	t.Logf("64 MiB in a 32 MiB guest: %v", err)
	if r, err := one(t, p, nil, "alloc:1"); err != nil || string(r.Value) != "ok" {
		t.Errorf("next batch: %v, %v", r, err)
	}
}

// Clock and randomness are fake unless granted.
func TestGoPluginGrants(t *testing.T) {
	year := strconv.Itoa(time.Now().Year())
	rand := func(p *wasm.Plugin) string {
		r, err := one(t, p, nil, "rand")
		if err != nil {
			t.Fatal(err)
		}
		return string(r.Value)
	}
	sandboxed := kitcheck(t, wasm.WithInstances(1))
	if r, err := one(t, sandboxed, nil, "clock"); err != nil || string(r.Value) == year {
		t.Errorf("clock without a grant: %q, %v; want a fake year, not %s", r.Value, err, year)
	}
	again := kitcheck(t)
	if a, b := rand(sandboxed), rand(again); a != b {
		t.Errorf("random without a grant: %s and %s from two fresh instances; want the same fixed sequence", a, b)
	}
	granted := kitcheck(t, wasm.WithGrants(wasm.GrantClock|wasm.GrantRandom))
	if r, err := one(t, granted, nil, "clock"); err != nil || string(r.Value) != year {
		t.Errorf("clock with a grant: %q, %v; want %s", r.Value, err, year)
	}
	other := kitcheck(t, wasm.WithGrants(wasm.GrantRandom))
	if a, b := rand(granted), rand(other); a == b {
		t.Errorf("random with a grant: %s twice", a)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
