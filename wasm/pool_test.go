package wasm

import (
	"context"
	"testing"

	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/pool"
)

// With a buffer pool, guest output is copied into pool buffers, which
// ReleaseResult gives back.
func TestBufferPool(t *testing.T) {
	bp, err := pool.New(pool.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	r := newRuntime(t, WithBufferPool(bp))
	p := load(t, r, "abi_upper")
	ctx := context.Background()
	res, err := p.ProcessBatch(ctx, nil, records(50))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Results[0].Value); got != "VALUE 0: HELLO, WöRLD!" {
		t.Errorf("value = %q", got)
	}
	if st := bp.Stats(); st.Total.InUse != 1 {
		t.Errorf("pool buffers in use while the result lives = %d, want 1", st.Total.InUse)
	}
	ReleaseResult(res)
	ReleaseResult(res) // a second release does nothing
	st := bp.Stats()
	if st.Total.InUse != 0 || st.Errors.Total != 0 {
		t.Errorf("after ReleaseResult: %d in use, %d errors; want 0 and 0", st.Total.InUse, st.Errors.Total)
	}
	if len(res.Results) != 50 {
		t.Errorf("len(Results) = %d, want 50", len(res.Results))
	}
	// A second batch reuses the buffer: a pool hit.
	res, err = p.ProcessBatch(ctx, nil, records(50))
	if err != nil {
		t.Fatal(err)
	}
	ReleaseResult(res)
	if st := bp.Stats(); st.Total.Hits == 0 {
		t.Errorf("pool hits = 0 after two batches, want the second to reuse the first's buffer")
	}
	// Nothing to release: an all-unchanged result, a result without a
	// pool, nil.
	ReleaseResult(nil)
	ReleaseResult(&plugin.BatchResult{})
	mixed := load(t, newRuntime(t), "abi_mixed")
	res, err = mixed.ProcessBatch(ctx, nil, records(4))
	if err != nil {
		t.Fatal(err)
	}
	ReleaseResult(res)
	if st := bp.Stats(); st.Errors.Total != 0 {
		t.Errorf("pool errors = %d, want 0", st.Errors.Total)
	}
}
