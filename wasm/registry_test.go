package wasm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
)

// fakeSource serves modules from a map and counts fetches.
type fakeSource struct {
	mu      sync.Mutex
	modules map[string][]byte // by name@digest
	fetches atomic.Int64
	fail    error // returned by every fetch when set
}

func (s *fakeSource) add(name string, module []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := Digest(module)
	s.modules[key(name, d)] = module
	return d
}

func (s *fakeSource) Fetch(ctx context.Context, name, digest string) ([]byte, error) {
	s.fetches.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	m, ok := s.modules[key(name, digest)]
	if !ok {
		return nil, fmt.Errorf("fake: %s@%s: %w", name, digest, plugin.ErrUnknownPlugin)
	}
	return m, nil
}

// workerModules is the interface package worker declares for the modules
// it runs (worker.Modules); a Registry must satisfy it.
type workerModules interface {
	Plugin(ctx context.Context, name, digest string) (plugin.BatchPlugin, error)
	Loaded() map[string][]string
}

var (
	_ workerModules      = (*Registry)(nil)
	_ plugin.BatchPlugin = (*Pinned)(nil)
	_ plugin.Stater      = (*Pinned)(nil)
	// The worker's hot path: a plugin that takes the wire bytes.
	_ interface {
		ProcessEncoded(ctx context.Context, msg []byte, recs []plugin.Record) (*plugin.BatchResult, error)
	} = (*Pinned)(nil)
)

func newRegistry(t *testing.T, src ModuleSource, opts ...RegistryOption) (*Registry, *Runtime) {
	t.Helper()
	rt := newRuntime(t)
	reg, err := NewRegistry(rt, src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return reg, rt
}

func upperOf(t *testing.T, p plugin.BatchPlugin, v string) string {
	t.Helper()
	res, err := p.ProcessBatch(context.Background(), nil, []plugin.Record{{Value: []byte(v)}})
	if err != nil {
		t.Fatalf("ProcessBatch: %v", err)
	}
	return string(res.Results[0].Value)
}

func TestRegistryLoadsOnce(t *testing.T) {
	src := &fakeSource{modules: map[string][]byte{}}
	d := src.add("up", module(t, "abi_upper"))
	reg, rt := newRegistry(t, src)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		// Stops after one batch.
		go func() {
			defer wg.Done()
			p, err := reg.Plugin(context.Background(), "up", d)
			if err != nil {
				t.Error(err)
				return
			}
			if got := upperOf(t, p, "abc"); got != "ABC" {
				t.Errorf("got %q, want ABC", got)
			}
		}()
	}
	wg.Wait()
	if n := src.fetches.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
	if n, _ := rt.CompileStats(); n != 1 {
		t.Errorf("compiles = %d, want 1", n)
	}
	if got := reg.Loaded(); len(got["up"]) != 1 || got["up"][0] != d {
		t.Errorf("Loaded() = %v, want up: [%s]", got, d)
	}
}

func TestRegistryEvictsIdleLeastRecentlyUsed(t *testing.T) {
	src := &fakeSource{modules: map[string][]byte{}}
	up := src.add("up", module(t, "abi_upper"))
	mixed := src.add("mixed", module(t, "abi_mixed"))
	noop := src.add("noop", module(t, "noop"))
	reg, _ := newRegistry(t, src, WithMaxModules(2))
	ctx := context.Background()
	pUp, err := reg.Plugin(ctx, "up", up)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct{ name, digest string }{{"mixed", mixed}, {"noop", noop}} {
		if _, err := reg.Plugin(ctx, n.name, n.digest); err != nil {
			t.Fatal(err)
		}
	}
	loaded := reg.Loaded()
	if _, ok := loaded["up"]; ok || len(loaded) != 2 {
		t.Errorf("Loaded() = %v, want mixed and noop (up evicted)", loaded)
	}
	if st := reg.Stats(); st.Evicted != 1 || st.Loads != 3 || st.Modules != 2 {
		t.Errorf("Stats() = %+v, want 3 loads, 1 eviction, 2 modules", st)
	}
	// The evicted module's handle still works: it is loaded again.
	if got := upperOf(t, pUp, "again"); got != "AGAIN" {
		t.Errorf("evicted pinned plugin: got %q", got)
	}
	if n := src.fetches.Load(); n != 4 {
		t.Errorf("fetches = %d, want 4 (up again)", n)
	}
}

// hold starts a batch on name@digest that stays in progress until the
// returned release is called; it returns the module's Plugin.
func hold(t *testing.T, reg *Registry, name, digest string) (*Plugin, func()) {
	t.Helper()
	p, err := reg.Plugin(context.Background(), name, digest)
	if err != nil {
		t.Fatal(err)
	}
	recs := records(2)
	msg := encode(t, &batch.Batch{Records: recs})
	var inner *Plugin
	running, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	// Stops when release is closed.
	go func() {
		done <- p.(*Pinned).ProcessEncodedFunc(context.Background(), msg, recs, func(*plugin.BatchResult) error {
			reg.mu.Lock()
			inner = reg.entries[key(name, digest)].p
			reg.mu.Unlock()
			close(running)
			<-release
			return nil
		})
	}()
	<-running
	return inner, func() {
		close(release)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// Modules running batches are not closed and do not count against the
// limit; once idle, the least recently used beyond it is closed.
func TestRegistryKeepsBusyModules(t *testing.T) {
	src := &fakeSource{modules: map[string][]byte{}}
	up := src.add("up", module(t, "abi_upper"))
	noop := src.add("noop", module(t, "noop"))
	reg, _ := newRegistry(t, src, WithMaxModules(1))
	upPlugin, releaseUp := hold(t, reg, "up", up)
	noopPlugin, releaseNoop := hold(t, reg, "noop", noop)
	if st := reg.Stats(); st.Modules != 2 || st.Loads != 2 || st.Evicted != 0 {
		t.Errorf("Stats() while both run = %+v, want 2 modules, 2 loads, none evicted", st)
	}
	releaseUp()
	if st := reg.Stats(); st.Modules != 2 || st.Evicted != 0 {
		t.Errorf("Stats() with one idle = %+v, want 2 modules, none evicted", st)
	}
	releaseNoop()
	if st := reg.Stats(); st.Modules != 1 || st.Evicted != 1 {
		t.Errorf("Stats() with both idle = %+v, want 1 module, 1 evicted", st)
	}
	if got := upPlugin.State(); got != plugin.Stopped {
		t.Errorf("least recently used module State() = %s, want stopped", got)
	}
	if got := noopPlugin.State(); got != plugin.Ready {
		t.Errorf("kept module State() = %s, want ready", got)
	}
	if got := reg.Loaded(); len(got) != 1 || len(got["noop"]) != 1 {
		t.Errorf("Loaded() = %v, want noop only", got)
	}
}

func TestRegistryErrors(t *testing.T) {
	src := &fakeSource{modules: map[string][]byte{}}
	good := module(t, "abi_upper")
	d := Digest(good)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 1
	src.modules[key("tampered", d)] = tampered
	forbidden := src.add("forbidden", module(t, "path_open"))
	reg, rt := newRegistry(t, src)
	ctx := context.Background()
	for _, tt := range []struct {
		name, plugin, digest string
		want, also           error
	}{
		{"not found", "nope", d, plugin.ErrUnknownPlugin, nil},
		// RELIABILITY rows 12 and 13: refused before compile.
		{"tampered", "tampered", d, plugin.ErrUnknownPlugin, ErrDigestMismatch},
		{"forbidden import", "forbidden", forbidden, plugin.ErrUnknownPlugin, ErrForbiddenImport},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := src.fetches.Load()
			for range 2 {
				_, err := reg.Plugin(ctx, tt.plugin, tt.digest)
				if !errors.Is(err, tt.want) {
					t.Fatalf("error = %v, want %v", err, tt.want)
				}
				if tt.also != nil && !errors.Is(err, tt.also) {
					t.Errorf("error = %v, want it to match %v too", err, tt.also)
				}
				if errors.Is(err, plugin.ErrUnavailable) {
					t.Errorf("error = %v is transient; want permanent", err)
				}
			}
			if n := src.fetches.Load() - before; n != 1 {
				t.Errorf("fetches = %d, want 1 (the failure is remembered)", n)
			}
		})
	}
	if n, _ := rt.CompileStats(); n != 0 {
		t.Errorf("compiles = %d, want 0 (the preflight refuses the forbidden import, the digest the tampered module)", n)
	}
}

func TestRegistryTransientErrors(t *testing.T) {
	src := &fakeSource{modules: map[string][]byte{}, fail: errors.New("nats: timeout")}
	reg, _ := newRegistry(t, src)
	d := Digest(module(t, "abi_upper"))
	for range 2 {
		_, err := reg.Plugin(context.Background(), "up", d)
		if !errors.Is(err, plugin.ErrUnavailable) {
			t.Fatalf("error = %v, want plugin.ErrUnavailable", err)
		}
	}
	if n := src.fetches.Load(); n != 2 {
		t.Errorf("fetches = %d, want 2 (transient failures are not remembered)", n)
	}
	src.mu.Lock()
	src.fail = nil
	src.mu.Unlock()
	src.add("up", module(t, "abi_upper"))
	if _, err := reg.Plugin(context.Background(), "up", d); err != nil {
		t.Errorf("after the source recovered: %v", err)
	}
}

func TestRegistryClose(t *testing.T) {
	src := &fakeSource{modules: map[string][]byte{}}
	d := src.add("up", module(t, "abi_upper"))
	reg, _ := newRegistry(t, src)
	p, err := reg.Plugin(context.Background(), "up", d)
	if err != nil {
		t.Fatal(err)
	}
	reg.Close()
	reg.Close()
	if _, err := p.ProcessBatch(context.Background(), nil, records(1)); !errors.Is(err, plugin.ErrUnavailable) || !errors.Is(err, ErrClosed) {
		t.Errorf("batch after Close: error = %v, want plugin.ErrUnavailable and ErrClosed", err)
	}
	if got := p.(plugin.Stater).State(); got != plugin.Stopped {
		t.Errorf("State() after Close = %s, want stopped", got)
	}
}

func TestRegistryOptions(t *testing.T) {
	for _, opt := range []RegistryOption{WithMaxModules(0), WithLoadTimeout(0), WithFailureTTL(-time.Second)} {
		if _, err := NewRegistry(nil, nil, opt); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("NewRegistry error = %v, want ErrInvalidOption", err)
		}
	}
}
