package wasm

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dataflare/dataflare/internal/poll"
	"github.com/dataflare/dataflare/plugin"
)

// Modules that must not load (RELIABILITY rows 11–13): each is refused
// with a clear error, before any batch runs.
func TestLoadRefuses(t *testing.T) {
	const timeout = 300 * time.Millisecond
	r := newRuntime(t, WithTimeout(timeout), WithMemoryLimitPages(512))
	for _, tt := range []struct {
		name    string
		module  []byte
		want    error
		also    error  // a second error the result must match, or nil
		message string // a substring of the message
	}{
		{"garbage", []byte("not wasm at all"), ErrInvalidModule, nil, "invalid module"},
		{"bigmem", module(t, "bigmem"), ErrInvalidModule, nil, "40000"},
		{"bigdata", module(t, "bigdata"), ErrInstantiate, nil, "out of bounds"},
		{"path_open", module(t, "path_open"), ErrForbiddenImport, nil, "wasi_snapshot_preview1.path_open"},
		{"sock", module(t, "sock"), ErrForbiddenImport, nil, "sock_accept"},
		{"unknown_import", module(t, "unknown_import"), ErrForbiddenImport, nil, `host module "env"`},
		{"bad_version", module(t, "bad_version"), ErrABI, nil, "returned 2"},
		{"missing_export", module(t, "missing_export"), ErrABI, nil, "df_process"},
		{"start_loop", module(t, "start_loop"), ErrInstantiate, context.DeadlineExceeded, "deadline"},
		{"init_loop", module(t, "init_loop"), ErrInstantiate, context.DeadlineExceeded, "deadline"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n0, c0 := r.CompileStats()
			start := time.Now()
			p, err := r.Load(context.Background(), tt.module)
			_, c1 := r.CompileStats()
			elapsed := time.Since(start) - (c1 - c0) // the deadline bounds instantiation, not compilation
			if err == nil {
				p.Close()
				t.Fatalf("Load succeeded, want an error matching %v", tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want one matching %v", err, tt.want)
			}
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Errorf("error = %v, want one also matching %v", err, tt.also)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error = %q, want it to mention %q", err, tt.message)
			}
			within(t, "Load without compiling", elapsed, timeout+100*time.Millisecond)
			if _, err := r.Validate(context.Background(), tt.module); !errors.Is(err, tt.want) {
				t.Errorf("Validate error = %v, want one matching %v", err, tt.want)
			}
			t.Logf("%s: %v (after %s; %d compiles)", tt.name, err, elapsed.Round(time.Millisecond), func() int64 { n, _ := r.CompileStats(); return n - n0 }())
		})
	}
}

// RELIABILITY row 13: a module that does not hash to its pinned digest is
// refused before it is compiled.
func TestLoadVerifiedRefusesBeforeCompile(t *testing.T) {
	r := newRuntime(t)
	good := module(t, "abi_upper")
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 0xff
	p, err := r.LoadVerified(context.Background(), tampered, Digest(good))
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("LoadVerified(tampered) error = %v, want ErrDigestMismatch", err)
	}
	if p != nil {
		t.Error("LoadVerified returned a plugin with its error")
	}
	if n, _ := r.CompileStats(); n != 0 {
		t.Errorf("compiles after a refused module = %d, want 0", n)
	}
	p, err = r.LoadVerified(context.Background(), good, Digest(good))
	if err != nil {
		t.Fatalf("LoadVerified(good): %v", err)
	}
	defer p.Close()
	if got, want := p.Digest(), Digest(good); got != want {
		t.Errorf("Digest() = %s, want %s", got, want)
	}
}

// Runaway and crashing guests (RELIABILITY rows 10 and 11): each fails its
// batch with a clear error within the deadline + 100 ms, the instance is
// replaced, and another plugin on the same runtime keeps serving.
func TestHostileBatches(t *testing.T) {
	r := newRuntime(t, WithMemoryLimitPages(256), WithInstances(2))
	good := load(t, r, "abi_upper")
	for _, tt := range []struct {
		module   string
		deadline time.Duration
		want     error
		also     error
		message  string
	}{
		{"loop", 200 * time.Millisecond, plugin.ErrTimeout, context.DeadlineExceeded, "deadline"},
		{"grow", 5 * time.Second, plugin.ErrTrap, nil, "of its 256-page limit"},
		{"bad_output", 5 * time.Second, plugin.ErrTrap, nil, "broke the ABI"},
	} {
		t.Run(tt.module+"/"+tt.deadline.String(), func(t *testing.T) {
			deadline := tt.deadline
			p := load(t, r, tt.module)
			for round := range 2 { // the second batch runs on a fresh instance
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				start := time.Now()
				res, err := p.ProcessBatch(ctx, nil, records(3))
				elapsed := time.Since(start)
				cancel()
				if res != nil {
					t.Errorf("round %d: a failed batch returned results", round)
				}
				if !errors.Is(err, tt.want) {
					t.Fatalf("round %d: error = %v, want one matching %v", round, err, tt.want)
				}
				if tt.also != nil && !errors.Is(err, tt.also) {
					t.Errorf("round %d: error = %v, want one also matching %v", round, err, tt.also)
				}
				if !strings.Contains(err.Error(), tt.message) {
					t.Errorf("round %d: error = %q, want it to mention %q", round, err, tt.message)
				}
				within(t, "failed batch", elapsed, deadline+100*time.Millisecond)
				if round == 0 {
					t.Logf("%s: %v (after %s)", tt.module, err, elapsed.Round(time.Millisecond))
				}
			}
			st := p.Stats()
			// The first batch ran on the instance Load made; each failure
			// discarded its instance and the next batch made a new one.
			if st.Discarded != 2 || st.Created != 2 || st.Instances != 0 {
				t.Errorf("Stats() = %+v, want 2 instances created and discarded, none live", st)
			}
			if got := p.State(); got != plugin.Ready {
				t.Errorf("State() after 2 failures = %s, want ready", got)
			}
			res, err := good.ProcessBatch(context.Background(), nil, []plugin.Record{{Value: []byte("still here")}})
			if err != nil || string(res.Results[0].Value) != "STILL HERE" {
				t.Errorf("the other plugin after %s: %v, %v", tt.module, res, err)
			}
		})
	}
}

// Deep recursion: wazero checks the deadline at loop headers only, so a
// guest recursing without loops is stopped by wazero's stack ceiling (about
// 50 MB of guest stack) instead — a trap in a few hundred milliseconds, and
// in several seconds under the race detector. The instance is replaced.
func TestDeepRecursion(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "recurse")
	deadline := 2 * time.Second
	if raceEnabled {
		deadline = time.Minute
	}
	for round := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		_, err := p.ProcessBatch(ctx, nil, records(1))
		elapsed := time.Since(start)
		cancel()
		if !errors.Is(err, plugin.ErrTrap) || !strings.Contains(err.Error(), "stack overflow") {
			t.Fatalf("round %d: error = %v, want a stack overflow trap", round, err)
		}
		t.Logf("round %d: %v after %s", round, err, elapsed.Round(time.Millisecond))
	}
	if st := p.Stats(); st.Discarded != 2 || st.Traps != 2 {
		t.Errorf("Stats() = %+v, want 2 traps and 2 instances discarded", st)
	}
}

// A runaway guest is stopped at the deadline while other plugins' batches
// run on, concurrently.
func TestRunawayDoesNotBlockOthers(t *testing.T) {
	r := newRuntime(t, WithTimeout(500*time.Millisecond))
	loop := load(t, r, "loop")
	good := load(t, r, "abi_upper")
	var wg sync.WaitGroup
	wg.Add(1)
	var loopErr error
	// Stops when the runtime's timeout interrupts the guest.
	go func() {
		defer wg.Done()
		_, loopErr = loop.ProcessBatch(context.Background(), nil, records(1))
	}()
	for i := range 50 {
		res, err := good.ProcessBatch(context.Background(), nil, records(10))
		if err != nil {
			t.Fatalf("batch %d of the good plugin: %v", i, err)
		}
		if res.Processed() != 10 {
			t.Fatalf("batch %d: %d results, want 10", i, res.Processed())
		}
	}
	wg.Wait()
	if !errors.Is(loopErr, plugin.ErrTimeout) {
		t.Errorf("runaway batch error = %v, want plugin.ErrTimeout (the runtime's default timeout)", loopErr)
	}
}

func TestCancelStopsGuest(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "loop")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Stops when cancel interrupts the guest.
	go func() {
		_, err := p.ProcessBatch(ctx, nil, records(1))
		done <- err
	}()
	poll.Wait(t, 10*time.Second, "the batch to start", func() bool { return p.Stats().Batches == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, plugin.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v, want one matching plugin.ErrUnavailable and context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not stop the guest")
	}
}

// RELIABILITY row 12: the guest sees no environment and no arguments, even
// though the worker process has both.
func TestSandboxHidesEnvironment(t *testing.T) {
	t.Setenv("DATAFLARE_SECRET", "hunter2")
	if len(os.Environ()) == 0 {
		t.Fatal("the test process has no environment to hide")
	}
	r := newRuntime(t)
	p := load(t, r, "environ")
	res, err := p.ProcessBatch(context.Background(), nil, records(2))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res.Results {
		if len(r.Value) != 16 {
			t.Fatalf("record %d: value of %d bytes, want 16", i, len(r.Value))
		}
		for j, what := range []string{"environ count", "environ bytes", "args count", "args bytes"} {
			if n := binary.LittleEndian.Uint32(r.Value[4*j:]); n != 0 {
				t.Errorf("record %d: guest sees %s = %d, want 0", i, what, n)
			}
		}
	}
}

// RELIABILITY row 11: a memory.grow bomb is stopped at the page limit, and
// the worker's peak memory grows by about that limit, not by the 4 GiB the
// bomb asks for. The bomb runs in a child process (this test binary again),
// whose peak RSS is not inflated by other tests.
func TestMemoryBombBoundsRSS(t *testing.T) {
	const pages = 1024 // 64 MiB
	if childRun() {
		r := newRuntime(t, WithMemoryLimitPages(pages), WithInstances(1))
		p := load(t, r, "grow")
		before := peakRSS(t)
		for range 3 {
			_, err := p.ProcessBatch(context.Background(), nil, records(1))
			if !errors.Is(err, plugin.ErrTrap) || !strings.Contains(err.Error(), "of its 1024-page limit") {
				t.Fatalf("error = %v, want a trap at the page limit", err)
			}
		}
		reportGrowth(peakRSS(t) - before)
		return
	}
	grown := childPeakRSSGrowth(t, "TestMemoryBombBoundsRSS")
	t.Logf("peak RSS grew by %d MiB for a %d MiB page limit (3 bombs)", grown>>20, pages>>4)
	if limit := int64(2 * pages * 65536); grown > limit {
		t.Errorf("peak RSS grew by %d MiB, want ≤ %d MiB (2 × the page limit)", grown>>20, limit>>20)
	}
}

// peakRSS returns the process's peak resident set size (VmHWM) in bytes.
func peakRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Skip("no VmHWM in /proc/self/status")
	return 0
}
