package plugin_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dataflare/dataflare/plugin"
)

func TestBatchResultCounts(t *testing.T) {
	errA := errors.New("a")
	errB := &plugin.Error{Code: plugin.CodeTrap}
	tests := []struct {
		name                                  string
		res                                   plugin.BatchResult
		processed, succeeded, failed, dropped int
		errs                                  []plugin.RecordError
		throughput                            float64
	}{
		{name: "empty"},
		{
			name:      "zero duration",
			res:       plugin.BatchResult{Results: []plugin.Result{plugin.Value(nil), plugin.Value([]byte("x"))}},
			processed: 2, succeeded: 2,
			throughput: 0,
		},
		{
			name: "mixed",
			res: plugin.BatchResult{
				Results: []plugin.Result{
					plugin.Value([]byte("x")),
					plugin.Fail(errA),
					plugin.Drop(),
					plugin.Drop(),
					{Dropped: true, Err: errB}, // an error wins over dropped
					plugin.Value([]byte("y")),
					plugin.Fail(errB),
					plugin.Value(nil),
				},
				Duration: 2 * time.Second,
			},
			processed: 8, succeeded: 5, failed: 3, dropped: 2,
			errs:       []plugin.RecordError{{Index: 1, Err: errA}, {Index: 4, Err: errB}, {Index: 6, Err: errB}},
			throughput: 4,
		},
		{
			name:      "all failed",
			res:       plugin.BatchResult{Results: []plugin.Result{plugin.Fail(errA), plugin.Fail(errA)}, Duration: 500 * time.Millisecond},
			processed: 2, failed: 2,
			errs:       []plugin.RecordError{{Index: 0, Err: errA}, {Index: 1, Err: errA}},
			throughput: 4,
		},
		{
			name:      "negative duration",
			res:       plugin.BatchResult{Results: []plugin.Result{plugin.Drop()}, Duration: -time.Second},
			processed: 1, succeeded: 1, dropped: 1,
			throughput: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &tt.res
			if got := b.Processed(); got != tt.processed {
				t.Errorf("Processed() = %d, want %d", got, tt.processed)
			}
			if got := b.Succeeded(); got != tt.succeeded {
				t.Errorf("Succeeded() = %d, want %d", got, tt.succeeded)
			}
			if got := b.Failed(); got != tt.failed {
				t.Errorf("Failed() = %d, want %d", got, tt.failed)
			}
			if got := b.Dropped(); got != tt.dropped {
				t.Errorf("Dropped() = %d, want %d", got, tt.dropped)
			}
			if diff := cmp.Diff(tt.errs, b.Errors(), cmp.Comparer(func(x, y error) bool { return x == y })); diff != "" {
				t.Errorf("Errors() (-want +got):\n%s", diff)
			}
			if got := b.Throughput(); got != tt.throughput {
				t.Errorf("Throughput() = %v, want %v", got, tt.throughput)
			}
		})
	}
}

func TestResultConstructors(t *testing.T) {
	err := errors.New("x")
	tests := []struct {
		name string
		got  plugin.Result
		want plugin.Result
		ok   bool
	}{
		{"Value", plugin.Value([]byte("v")), plugin.Result{Value: []byte("v")}, true},
		{"Drop", plugin.Drop(), plugin.Result{Dropped: true}, true},
		{"Fail", plugin.Fail(err), plugin.Result{Err: err}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got, cmp.Comparer(func(x, y error) bool { return x == y })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if got := tt.got.OK(); got != tt.ok {
				t.Errorf("OK() = %v, want %v", got, tt.ok)
			}
		})
	}
}

func TestRecordSize(t *testing.T) {
	tests := []struct {
		name string
		r    plugin.Record
		want int
	}{
		{"zero", plugin.Record{}, 0},
		{"value", plugin.Record{Value: []byte("hello")}, 5},
		{"key and value", plugin.Record{Key: []byte("k1"), Value: []byte("hello")}, 7},
		{"headers", plugin.Record{
			Key:   []byte("k"),
			Value: []byte("vv"),
			Headers: []plugin.Header{
				{Key: []byte("trace"), Value: []byte("abc")},
				{Key: []byte("empty")},
				{Value: []byte("only value")},
			},
			Timestamp: time.Unix(1, 0), // not payload
		}, 1 + 2 + 5 + 3 + 5 + 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Size(); got != tt.want {
				t.Errorf("Size() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRecordHeader(t *testing.T) {
	r := plugin.Record{Headers: []plugin.Header{
		{Key: []byte("ms"), Value: []byte("5")},
		{Key: []byte("trace"), Value: []byte("first")},
		{Key: []byte("trace"), Value: []byte("second")},
		{Key: []byte("empty"), Value: nil},
		{Key: []byte("Trace"), Value: []byte("upper")},
	}}
	tests := []struct {
		key    string
		want   string
		wantOK bool
	}{
		{"ms", "5", true},
		{"trace", "first", true}, // the first of two
		{"Trace", "upper", true}, // keys are case-sensitive
		{"empty", "", true},      // present, empty value
		{"absent", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, ok := r.Header(tt.key)
			if string(got) != tt.want || ok != tt.wantOK {
				t.Errorf("Header(%q) = (%q, %v), want (%q, %v)", tt.key, got, ok, tt.want, tt.wantOK)
			}
		})
	}
	var none plugin.Record
	if v, ok := none.Header("x"); v != nil || ok {
		t.Errorf("Header on a record without headers = (%q, %v), want (nil, false)", v, ok)
	}
}
