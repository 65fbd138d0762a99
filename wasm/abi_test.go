package wasm

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

// resultView is a Result as cmp can compare it.
type resultView struct {
	Value   string
	Dropped bool
	Code    plugin.Code
	Err     string
}

func view(rs []plugin.Result) []resultView {
	out := make([]resultView, len(rs))
	for i, r := range rs {
		out[i] = resultView{Value: string(r.Value), Dropped: r.Dropped}
		if r.Err != nil {
			out[i].Code, out[i].Err = plugin.CodeOf(r.Err), r.Err.Error()
		}
	}
	return out
}

// The WAT plugin written from docs/abi.md gives the native upper's output,
// through both entry points.
func TestABIUpperMatchesNative(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "abi_upper")
	if got, want := p.Info(), (plugin.Info{Name: "abi-upper", Version: "1.0.0", Type: plugin.Transformer,
		Description: "ASCII upper-case, in WAT", APIVersion: "1.0"}); got != want {
		t.Errorf("Info() = %+v, want %+v", got, want)
	}
	ctx := context.Background()
	for _, n := range []int{0, 1, 7, 1000} {
		recs := records(n)
		want, err := builtin.Upper{}.ProcessBatch(ctx, nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.ProcessBatch(ctx, plugin.Config{"ignored": "yes"}, recs)
		if err != nil {
			t.Fatalf("%d records: ProcessBatch: %v", n, err)
		}
		if diff := cmp.Diff(view(want.Results), view(got.Results)); diff != "" {
			t.Errorf("%d records: ProcessBatch results (-native +wasm):\n%s", n, diff)
		}
		msg := encode(t, &batch.Batch{Job: "j", Seq: 3, Plugin: "abi-upper", Records: recs})
		got, err = p.ProcessEncoded(ctx, msg, recs)
		if err != nil {
			t.Fatalf("%d records: ProcessEncoded: %v", n, err)
		}
		if diff := cmp.Diff(view(want.Results), view(got.Results)); diff != "" {
			t.Errorf("%d records: ProcessEncoded results (-native +wasm):\n%s", n, diff)
		}
	}
}

// Results are copied out of guest memory: the next batch on the same
// instance does not change them.
func TestResultsOutliveTheCall(t *testing.T) {
	r := newRuntime(t, WithInstances(1))
	p := load(t, r, "abi_upper")
	ctx := context.Background()
	first, err := p.ProcessBatch(ctx, nil, []plugin.Record{{Value: []byte("first")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ProcessBatch(ctx, nil, []plugin.Record{{Value: []byte("other")}}); err != nil {
		t.Fatal(err)
	}
	if got := string(first.Results[0].Value); got != "FIRST" {
		t.Errorf("first result after a second batch = %q, want %q", got, "FIRST")
	}
}

func TestABIMixedStatuses(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "abi_mixed")
	ctx := context.Background()
	recs := records(8)
	got, err := p.ProcessBatch(ctx, nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	var want []resultView
	for i := range recs {
		switch i % 4 {
		case 0:
			want = append(want, resultView{Value: string(recs[i].Key)})
		case 1:
			want = append(want, resultView{Dropped: true})
		case 2:
			want = append(want, resultView{Code: plugin.CodeProcessing, Err: "odd record"})
		case 3:
			want = append(want, resultView{Value: string(recs[i].Value)})
		}
	}
	if diff := cmp.Diff(want, view(got.Results)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if got, want := got.Failed(), 2; got != want {
		t.Errorf("Failed() = %d, want %d", got, want)
	}
	// Status 3 aliases the input: no copy.
	if &got.Results[3].Value[0] != &recs[3].Value[0] {
		t.Error("unchanged result does not alias the input record")
	}
	for _, e := range got.Errors() {
		if !errors.Is(e, plugin.ErrProcessing) {
			t.Errorf("record error %v does not match plugin.ErrProcessing", e)
		}
	}
}

// A batch-level error (bit 63) fails the batch with the guest's code and
// message, and the instance stays in service.
func TestABIBatchError(t *testing.T) {
	r := newRuntime(t, WithInstances(1))
	p := load(t, r, "abi_mixed")
	ctx := context.Background()
	_, err := p.ProcessBatch(ctx, plugin.Config{"mode": "x"}, records(3))
	if !errors.Is(err, plugin.ErrInvalidInput) {
		t.Fatalf("error = %v, want one matching plugin.ErrInvalidInput", err)
	}
	if got, want := err.Error(), "abi-mixed takes no configuration"; got != want {
		t.Errorf("error message = %q, want %q", got, want)
	}
	if _, err := p.ProcessBatch(ctx, nil, records(3)); err != nil {
		t.Fatalf("batch after a batch error: %v", err)
	}
	if st := p.Stats(); st.Discarded != 0 || st.Created != 1 || st.Failed != 1 {
		t.Errorf("Stats() = %+v, want 1 instance created, none discarded, 1 batch failed", st)
	}
}

func TestProcessEncodedCountMismatch(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "abi_upper")
	msg := encode(t, &batch.Batch{Records: records(3)})
	for _, tt := range []struct {
		name string
		msg  []byte
		recs []plugin.Record
	}{
		{"fewer records", msg, records(2)},
		{"short message", msg[:8], records(3)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.ProcessEncoded(context.Background(), tt.msg, tt.recs)
			if !errors.Is(err, plugin.ErrInvalidInput) {
				t.Errorf("error = %v, want one matching plugin.ErrInvalidInput", err)
			}
		})
	}
}

// ProcessEncodedFunc hands out values in guest memory, valid during fn.
func TestProcessEncodedFunc(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "abi_upper")
	recs := records(4)
	msg := encode(t, &batch.Batch{Records: recs})
	var got []string
	err := p.ProcessEncodedFunc(context.Background(), msg, recs, func(res *plugin.BatchResult) error {
		for _, r := range res.Results {
			got = append(got, string(r.Value))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"VALUE 0: HELLO, WöRLD!", "VALUE 1: HELLO, WöRLD!", "VALUE 2: HELLO, WöRLD!", "VALUE 3: HELLO, WöRLD!"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	sentinel := errors.New("stop")
	if err := p.ProcessEncodedFunc(context.Background(), msg, recs, func(*plugin.BatchResult) error { return sentinel }); err != sentinel {
		t.Errorf("error = %v, want fn's error", err)
	}
}

// A batch over the wire limits fails before the guest runs, and the
// instance is kept.
func TestProcessBatchOverLimit(t *testing.T) {
	r := newRuntime(t, WithInstances(1))
	p := load(t, r, "abi_upper")
	big := []plugin.Record{{Key: bytes.Repeat([]byte("k"), batch.DefaultLimits.MaxKeySize+1)}}
	_, err := p.ProcessBatch(context.Background(), nil, big)
	if !errors.Is(err, plugin.ErrTooLarge) || !errors.Is(err, batch.ErrLimit) {
		t.Errorf("error = %v, want one matching plugin.ErrTooLarge and batch.ErrLimit", err)
	}
	if st := p.Stats(); st.Discarded != 0 {
		t.Errorf("Stats().Discarded = %d, want 0", st.Discarded)
	}
}
