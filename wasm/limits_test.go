package wasm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dataflare/dataflare/plugin"
)

func loadLimited(tb testing.TB, r *Runtime, name string, lim Limits) *Plugin {
	tb.Helper()
	m := module(tb, name)
	p, err := r.LoadLimited(context.Background(), m, Digest(m), lim)
	if err != nil {
		tb.Fatalf("LoadLimited(%s): %v", name, err)
	}
	tb.Cleanup(p.Close)
	return p
}

// A module's memory policy caps its guest memory below the runtime's page
// limit: the memory.grow bomb stops there, and the error says whose limit
// it hit. A policy above the runtime's limit is capped by it.
func TestLimitsMemory(t *testing.T) {
	r := newRuntime(t, WithMemoryLimitPages(256), WithInstances(1))
	for _, tt := range []struct {
		pages, want uint32
		message     string
	}{
		{32, 32, "refused, above the 32-page limit (the module policy's)"},
		{1024, 256, "of its 256-page limit (the worker's: the module policy's 1024 pages are above it)"},
		{0, 256, "of its 256-page limit: a memory.grow likely failed"},
	} {
		p := loadLimited(t, r, "grow", Limits{MemoryLimitPages: tt.pages})
		if p.MemoryLimitPages() != tt.want {
			t.Errorf("policy %d pages: limit %d, want %d", tt.pages, p.MemoryLimitPages(), tt.want)
		}
		_, err := p.ProcessBatch(context.Background(), nil, records(3))
		if !errors.Is(err, plugin.ErrTrap) || !strings.Contains(err.Error(), tt.message) {
			t.Errorf("policy %d pages: error = %v, want a trap saying %q", tt.pages, err, tt.message)
		}
	}
	// A module declaring a minimum above the policy is refused at load:
	// the Rust upper declares 17 pages.
	m, err := os.ReadFile(filepath.Join("..", "examples", "plugins", "upper-rust", "upper.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.LoadLimited(context.Background(), m, Digest(m), Limits{MemoryLimitPages: 16})
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "minimum of 17 pages, above the 16-page limit of the module's policy") {
		t.Errorf("a 17-page module under a 16-page policy: %v, want ErrLimit naming the policy", err)
	}
	if p, err := r.LoadLimited(context.Background(), m, Digest(m), Limits{MemoryLimitPages: 17}); err != nil {
		t.Errorf("a 17-page module under a 17-page policy: %v", err)
	} else {
		p.Close()
	}
}

// A module's timeout policy bounds each batch under the context's
// deadline; the error names the policy.
func TestLimitsTimeout(t *testing.T) {
	r := newRuntime(t, WithInstances(1))
	p := loadLimited(t, r, "loop", Limits{Timeout: 50 * time.Millisecond})
	start := time.Now()
	_, err := p.ProcessBatch(context.Background(), nil, records(1))
	within(t, "policy timeout", time.Since(start), 50*time.Millisecond+time.Second)
	if !errors.Is(err, plugin.ErrTimeout) || !strings.Contains(err.Error(), "the module policy's timeout of 50ms") {
		t.Errorf("error = %v, want a timeout naming the policy", err)
	}
	// An earlier deadline of the caller's applies, and the error says so.
	p = loadLimited(t, r, "loop", Limits{Timeout: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = p.ProcessBatch(ctx, nil, records(1))
	if !errors.Is(err, plugin.ErrTimeout) || !strings.Contains(err.Error(), "earlier than the module policy's timeout of 1h0m0s") {
		t.Errorf("error = %v, want a timeout saying the caller's deadline came first", err)
	}
}
