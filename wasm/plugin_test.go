package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

// The Plugin is a plugin.BatchPlugin, like a native one.
var (
	_ plugin.BatchPlugin = (*Plugin)(nil)
	_ plugin.Stater      = (*Plugin)(nil)
)

func TestOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		opt  Option
	}{
		{"zero pages", WithMemoryLimitPages(0)},
		{"too many pages", WithMemoryLimitPages(MaxMemoryLimitPages + 1)},
		{"zero timeout", WithTimeout(0)},
		{"negative timeout", WithTimeout(-time.Second)},
		{"zero instances", WithInstances(0)},
		{"empty cache dir", WithCacheDir("")},
		{"unknown grant", WithGrants(1 << 7)},
		{"nil output", WithGuestOutput(nil)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRuntime(context.Background(), tt.opt)
			if err == nil {
				_ = r.Close(context.Background())
			}
			if !errors.Is(err, ErrInvalidOption) {
				t.Errorf("NewRuntime error = %v, want ErrInvalidOption", err)
			}
		})
	}
}

// Hammer one plugin from many goroutines: every batch gets its own correct
// results and never more instances exist than the limit.
func TestConcurrentBatches(t *testing.T) {
	const instances = 2
	r := newRuntime(t, WithInstances(instances))
	p := load(t, r, "abi_upper")
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		// Stops after its 20 batches.
		go func() {
			defer wg.Done()
			for i := range 20 {
				recs := []plugin.Record{{Value: fmt.Appendf(nil, "g%d batch %d", g, i)}, {Value: []byte("x")}}
				res, err := p.ProcessBatch(ctx, nil, recs)
				if err != nil {
					errs <- err
					return
				}
				if want := fmt.Sprintf("G%d BATCH %d", g, i); string(res.Results[0].Value) != want {
					errs <- fmt.Errorf("got %q, want %q", res.Results[0].Value, want)
					return
				}
				if n := p.Stats().Instances; n > instances {
					errs <- fmt.Errorf("%d instances, limit %d", n, instances)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := p.Stats(); st.Batches != 320 || st.Records != 640 || st.Created > instances {
		t.Errorf("Stats() = %+v, want 320 batches, 640 records, ≤ %d instances created", st, instances)
	}
}

// A batch waiting for an instance gives up when its context ends.
func TestAcquireHonoursContext(t *testing.T) {
	r := newRuntime(t, WithInstances(1), WithTimeout(time.Minute))
	p := load(t, r, "loop")
	busy, cancelBusy := context.WithCancel(context.Background())
	done := make(chan struct{})
	// Stops when cancelBusy interrupts the guest.
	go func() {
		defer close(done)
		_, _ = p.ProcessBatch(busy, nil, records(1))
	}()
	poll.Wait(t, 10*time.Second, "the first batch to start", func() bool { return p.Stats().Batches == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.ProcessBatch(ctx, nil, records(1))
	if !errors.Is(err, plugin.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting batch error = %v, want plugin.ErrTimeout", err)
	}
	cancelBusy()
	<-done
}

// Close lets running batches finish and refuses new ones.
func TestCloseWhileRunning(t *testing.T) {
	r := newRuntime(t, WithInstances(2), WithTimeout(300*time.Millisecond))
	slow := load(t, r, "loop")
	started := make(chan struct{})
	done := make(chan error, 1)
	// Stops at the runtime's timeout.
	go func() {
		close(started)
		_, err := slow.ProcessBatch(context.Background(), nil, records(1))
		done <- err
	}()
	<-started
	poll.Wait(t, 10*time.Second, "the batch to start", func() bool { return slow.Stats().Batches == 1 })
	slow.Close()
	if got := slow.State(); got != plugin.Stopped {
		t.Errorf("State() after Close = %s, want stopped", got)
	}
	_, err := slow.ProcessBatch(context.Background(), nil, records(1))
	if !errors.Is(err, plugin.ErrUnavailable) || !errors.Is(err, ErrClosed) {
		t.Errorf("batch after Close: error = %v, want plugin.ErrUnavailable and ErrClosed", err)
	}
	if err := <-done; !errors.Is(err, plugin.ErrTimeout) {
		t.Errorf("running batch: error = %v, want it to end by its own deadline", err)
	}
	select {
	case <-slow.done:
	case <-time.After(5 * time.Second):
		t.Fatal("plugin not finished after its last batch")
	}
}

// Runtime.Close waits for running batches before it releases guest memory.
func TestRuntimeCloseWaits(t *testing.T) {
	r, err := NewRuntime(context.Background(), WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Load(context.Background(), module(t, "loop"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	start := time.Now()
	// Stops at the runtime's timeout.
	go func() {
		_, err := p.ProcessBatch(context.Background(), nil, records(1))
		done <- err
	}()
	poll.Wait(t, 10*time.Second, "the batch to start", func() bool { return p.Stats().Batches == 1 })
	if err := r.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The batch cannot end before its 200 ms deadline.
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("Runtime.Close returned %s after the batch started, before its deadline", d)
	}
	if err := <-done; !errors.Is(err, plugin.ErrTimeout) {
		t.Errorf("batch error = %v, want plugin.ErrTimeout", err)
	}
	if _, err := r.Load(context.Background(), module(t, "abi_upper")); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close: error = %v, want ErrClosed", err)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Guest output goes to the configured writer and is quoted in the error of
// a failed batch.
func TestGuestOutput(t *testing.T) {
	var buf syncBuffer
	r := newRuntime(t, WithGuestOutput(&buf))
	p := load(t, r, "stderr_trap")
	_, err := p.ProcessBatch(context.Background(), nil, records(1))
	if !errors.Is(err, plugin.ErrTrap) {
		t.Fatalf("error = %v, want plugin.ErrTrap", err)
	}
	if want := "trapped: wasm error: unreachable (memory: 4 of its 2048-page limit); guest output: boom: the guest gave up"; !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to contain %q", err, want)
	}
	if got, want := buf.String(), "boom: the guest gave up\n"; got != want {
		t.Errorf("guest output = %q, want %q", got, want)
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

func (s *syncBuffer) Len() int { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Len() }

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A restarted worker with a compilation cache does not compile again: the
// second runtime's load is much faster.
func TestCompilationCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	mod := module(t, "abi_upper")
	coldStart := func() time.Duration {
		start := time.Now()
		r, err := NewRuntime(context.Background(), WithCacheDir(dir))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close(context.Background())
		p, err := r.Load(context.Background(), mod)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.ProcessBatch(context.Background(), nil, []plugin.Record{{Value: []byte("ok")}})
		if err != nil || string(res.Results[0].Value) != "OK" {
			t.Fatalf("batch: %v, %v", res, err)
		}
		return time.Since(start)
	}
	first := coldStart()
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("cache directory after a load: %v, %v entries; want some", err, len(entries))
	}
	second := coldStart()
	t.Logf("cold start: %s with an empty cache, %s with a warm one", first, second)
}

// Grants change what guests see: here only that the options build a
// working runtime; the Go plugins' tests read the clock.
func TestGrants(t *testing.T) {
	r := newRuntime(t, WithGrants(GrantClock|GrantRandom))
	p := load(t, r, "abi_upper")
	res, err := p.ProcessBatch(context.Background(), nil, []plugin.Record{{Value: []byte("a")}})
	if err != nil || string(res.Results[0].Value) != "A" {
		t.Fatalf("batch with grants: %v, %v", res, err)
	}
}

// Native and WASM upper agree on random inputs.
func TestUpperAgreesOnRandomInput(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "abi_upper")
	recs := make([]plugin.Record, 200)
	for i := range recs {
		v := make([]byte, i*7%300)
		for j := range v {
			v[j] = byte(i*31 + j*17)
		}
		recs[i].Value = v
	}
	want, _ := builtin.Upper{}.ProcessBatch(context.Background(), nil, recs)
	got, err := p.ProcessBatch(context.Background(), nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if !bytes.Equal(got.Results[i].Value, want.Results[i].Value) {
			t.Fatalf("record %d: wasm %q, native %q", i, got.Results[i].Value, want.Results[i].Value)
		}
	}
}
