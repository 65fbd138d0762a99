//go:build chaos

package e2e

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/sizer"
	"github.com/dataflare/dataflare/wasm"
	"github.com/dataflare/dataflare/wasmstore"
)

// The worker's memory budget (--memory-budget) against a plugin whose
// output is large: testdata/expand.wasm returns each 1 KiB value 32 times
// over, so a batch of the 1 MiB the sizer grows to without pressure has
// 32 MiB of output in the guest and as much again in the worker's pool.
// A worker process runs the same job with no budget and with 16 MiB:
//
//   - without a budget the worker reports no pressure and its batches grow
//     to the size limit;
//   - with one, the pool's pressure reaches the sizer (its bound becomes
//     "pressure") and the batches stay smaller than without;
//   - both jobs give every record its result, in order.
//
// The worker's peak RSS (its ru_maxrss) is logged for each; BENCHMARKS.md ("The
// memory budget") records it. Memory is measured there, not asserted here.
// The jobs move 1 GB of results each: the test runs with the long tests
// (-tags chaos), not in go test ./... .
//
//	go test -tags chaos -run MemoryBudget -v ./e2e/
//	DF_BUDGETS=none,16MiB,64MiB DF_BUDGET_RECORDS=60000 go test -tags chaos -run MemoryBudget -v ./e2e/
func TestMemoryBudget(t *testing.T) {
	module, err := os.ReadFile("testdata/expand.wasm")
	if err != nil {
		t.Fatal(err)
	}
	// 30,000 records: 1 GB of results a job, enough for the batches to
	// grow to thousands without a budget; BENCHMARKS.md's figure is of 60,000.
	n := 30000
	if env := os.Getenv("DF_BUDGET_RECORDS"); env != "" {
		var err error
		if n, err = strconv.Atoi(env); err != nil {
			t.Fatalf("DF_BUDGET_RECORDS=%q: %v", env, err)
		}
	}
	budgets := []string{"none", "16MiB"}
	if env := os.Getenv("DF_BUDGETS"); env != "" {
		budgets = strings.Split(env, ",") // for BENCHMARKS.md: more budgets, none first
	}
	var runs []budgetRun
	for _, budget := range budgets {
		t.Run("budget="+budget, func(t *testing.T) {
			r := runBudgetJob(t, module, budget, n)
			t.Logf("--memory-budget %s: peak RSS %.1f MiB, largest batch %d records, pressure seen %.2f (bound %q)",
				budget, float64(r.peakRSS)/(1<<20), r.maxBatch, r.maxPressure, r.bound)
			if budget == "none" {
				if r.maxPressure != 0 {
					t.Errorf("pressure %.2f without a budget", r.maxPressure)
				}
			} else if r.bound != sizer.BoundPressure {
				t.Errorf("the sizer's bound never became %q (pressure at most %.2f)", sizer.BoundPressure, r.maxPressure)
			}
			runs = append(runs, r)
		})
	}
	if len(runs) != len(budgets) || budgets[0] != "none" {
		return
	}
	for i, r := range runs[1:] {
		if r.maxBatch >= runs[0].maxBatch {
			t.Errorf("largest batch %d records with --memory-budget %s, %d without: the pressure did not shrink them", r.maxBatch, budgets[i+1], runs[0].maxBatch)
		}
		t.Logf("peak RSS with --memory-budget %s / without: %.2f", budgets[i+1], float64(r.peakRSS)/float64(runs[0].peakRSS))
	}
}

// budgetRun is what runBudgetJob saw.
type budgetRun struct {
	peakRSS     int64   // the worker process's peak RSS (ru_maxrss), bytes
	maxBatch    int     // the largest batch size the coordinator named for expand
	maxPressure float64 // the highest pressure the sizer reported for expand
	bound       string  // sizer.BoundPressure when seen at least once, else the last bound
}

// runBudgetJob runs n records of 1 KiB through expand on one worker process
// started with --memory-budget budget, checks every result, and returns the
// worker's peak RSS and what the sizer did meanwhile.
func runBudgetJob(t *testing.T, module []byte, budget string, n int) budgetRun {
	f := newFleetProcs(t)
	// The sizer moves once a heartbeat: at 50 ms it reaches the size
	// limit within the job.
	f.hb = (50 * time.Millisecond).String()
	f.coordinator()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pushModule(ctx, t, f.url, "expand", module)
	w := f.worker("--memory-budget", budget)
	f.waitHealthy(1)
	c := f.client()

	var (
		mu  sync.Mutex
		run budgetRun
	)
	watchCtx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	// Stops when the job's results are read (stopWatch).
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if st, err := c.SystemStatus(watchCtx); err == nil {
				for _, p := range st.Plugins {
					if p.Name != "expand" {
						continue
					}
					if os.Getenv("DF_BUDGET_TRACE") != "" { // the sizer over time, to watch it settle
						t.Logf("%s size %d pressure %.2f bound %s target %d", time.Now().Format("05.000"), p.BatchSize, p.Sizer.Pressure, p.Sizer.Bound, p.Sizer.Target)
					}
					mu.Lock()
					run.maxBatch = max(run.maxBatch, p.BatchSize)
					run.maxPressure = max(run.maxPressure, p.Sizer.Pressure)
					if run.bound != sizer.BoundPressure {
						run.bound = p.Sizer.Bound
					}
					mu.Unlock()
				}
			}
			select {
			case <-watchCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	job, err := c.Submit(ctx, "expand", bigInputs(n))
	if err != nil {
		t.Fatal(err)
	}
	tl := collect(t, job, n, func(i int) []byte { return bytes.Repeat(bigValue(i), 32) })
	stopWatch()
	wg.Wait()
	requireOracle(t, tl, n)
	// The worker's peak RSS, as the kernel accounts it for a child that
	// exited (ru_maxrss, VmHWM at its exit; KiB on Linux).
	w.kill(syscall.SIGTERM)
	if err := w.wait(t, 30*time.Second); err != nil {
		t.Fatalf("worker: %v", err)
	}
	ru, ok := w.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatalf("no resource usage for the worker: %T", w.cmd.ProcessState.SysUsage())
	}
	run.peakRSS = ru.Maxrss << 10
	return run
}

// bigValue is record i's value in the budget test: value(i) padded to 1 KiB.
func bigValue(i int) []byte {
	v := make([]byte, 1024)
	copy(v, value(i))
	for j := len(value(i)); j < len(v); j++ {
		v[j] = 'a' + byte((i+j)%26)
	}
	return v
}

// bigInputs returns a Source of n records built by bigValue.
func bigInputs(n int) client.Source {
	return func(yield func(plugin.Record, error) bool) {
		for i := range n {
			if !yield(plugin.Record{Value: bigValue(i)}, nil) {
				return
			}
		}
	}
}

// pushModule stores a WebAssembly module under name, version 1.0.0.
func pushModule(ctx context.Context, t *testing.T, url, name string, module []byte) {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := wasm.NewRuntime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	store, err := wasmstore.New(ctx, js, wasmstore.WithValidator(rt))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Push(ctx, name, "1.0.0", module); err != nil {
		t.Fatal(err)
	}
}
