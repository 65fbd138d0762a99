package builtin_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func recs(values ...string) []plugin.Record {
	out := make([]plugin.Record, len(values))
	for i, v := range values {
		out[i].Value = []byte(v)
	}
	return out
}

// outcome is a comparable view of one result.
type outcome struct {
	Value   string
	Dropped bool
	Code    plugin.Code // CodeUnknown when there is no error
	Err     bool
}

func outcomes(res *plugin.BatchResult) []outcome {
	out := make([]outcome, len(res.Results))
	for i, r := range res.Results {
		out[i] = outcome{Value: string(r.Value), Dropped: r.Dropped, Err: r.Err != nil}
		if r.Err != nil {
			out[i].Code = plugin.CodeOf(r.Err)
		}
	}
	return out
}

func ok(values ...string) []outcome {
	out := make([]outcome, len(values))
	for i, v := range values {
		out[i] = outcome{Value: v}
	}
	return out
}

func TestPlugins(t *testing.T) {
	failed := outcome{Err: true, Code: plugin.CodeProcessing}
	tests := []struct {
		name    string
		plugin  string
		cfg     plugin.Config
		in      []plugin.Record
		want    []outcome
		wantErr error // a batch error matching this
	}{
		{name: "identity", plugin: builtin.IdentityName, in: recs("a", "", "Hello, wörld"), want: ok("a", "", "Hello, wörld")},
		{name: "identity empty batch", plugin: builtin.IdentityName, in: nil, want: []outcome{}},
		{name: "upper ascii", plugin: builtin.UpperName, in: recs("hello", "Hello World 123", "`az{AZ@[", ""), want: ok("HELLO", "HELLO WORLD 123", "`AZ{AZ@[", "")},
		{name: "upper keeps non-ascii", plugin: builtin.UpperName, in: recs("straße é ÿ", "\xff\xe1abc"), want: ok("STRAßE é ÿ", "\xff\xe1ABC")},
		{name: "upper long", plugin: builtin.UpperName, in: recs("the quick brown fox jumps over the lazy dog 0123456789"), want: ok("THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG 0123456789")},
		{name: "delay zero", plugin: builtin.DelayName, cfg: plugin.Config{"ms": "0"}, in: recs("a", "b"), want: ok("a", "b")},
		{name: "delay absent", plugin: builtin.DelayName, in: recs("a"), want: ok("a")},
		{name: "delay 1ms", plugin: builtin.DelayName, cfg: plugin.Config{"ms": "1"}, in: recs("x", "y"), want: ok("x", "y")},
		{name: "delay not a number", plugin: builtin.DelayName, cfg: plugin.Config{"ms": "abc"}, in: recs("x"), wantErr: plugin.ErrInvalidInput},
		{name: "delay negative", plugin: builtin.DelayName, cfg: plugin.Config{"ms": "-1"}, in: recs("x"), wantErr: plugin.ErrInvalidInput},
		{name: "delay too long", plugin: builtin.DelayName, cfg: plugin.Config{"ms": "3600001"}, in: recs("x"), wantErr: plugin.ErrInvalidInput},
		{name: "fail match", plugin: builtin.FailName, cfg: plugin.Config{"match": "bad"}, in: recs("good", "is bad", "badbad", "ba d"), want: []outcome{{Value: "good"}, failed, failed, {Value: "ba d"}}},
		{name: "fail no match config", plugin: builtin.FailName, in: recs("bad", ""), want: ok("bad", "")},
		{name: "fail empty match", plugin: builtin.FailName, cfg: plugin.Config{"match": ""}, in: recs("bad"), want: ok("bad")},
	}
	all := builtin.All()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := all[tt.plugin]
			res, err := p.ProcessBatch(context.Background(), tt.cfg, tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ProcessBatch error = %v, want one matching %v", err, tt.wantErr)
				}
				if res != nil {
					t.Errorf("ProcessBatch returned a result with its error: %+v", res)
				}
				return
			}
			if err != nil {
				t.Fatalf("ProcessBatch: %v", err)
			}
			if diff := cmp.Diff(tt.want, outcomes(res)); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			if res.Duration < 0 {
				t.Errorf("Duration = %v, want ≥ 0", res.Duration)
			}
		})
	}
}

func TestInfo(t *testing.T) {
	all := builtin.All()
	if got, want := len(all), len(builtin.Names()); got != want {
		t.Fatalf("len(All()) = %d, len(Names()) = %d", got, want)
	}
	for _, name := range builtin.Names() {
		t.Run(name, func(t *testing.T) {
			p, found := all[name]
			if !found {
				t.Fatalf("All() has no %q", name)
			}
			info := p.Info()
			if info.Name != name || info.Version != builtin.Version || info.APIVersion != plugin.APIVersion {
				t.Errorf("Info() = %+v, want name %q version %q api %q", info, name, builtin.Version, plugin.APIVersion)
			}
		})
	}
}

func TestIdentityZeroCopy(t *testing.T) {
	in := recs("abc", "defg")
	res, err := builtin.Identity{}.ProcessBatch(context.Background(), nil, in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if &res.Results[i].Value[0] != &in[i].Value[0] {
			t.Errorf("result %d does not alias its input", i)
		}
	}
}

func TestUpperDoesNotModifyInput(t *testing.T) {
	in := recs("abc", "xyz")
	if _, err := (builtin.Upper{}).ProcessBatch(context.Background(), nil, in); err != nil {
		t.Fatal(err)
	}
	if got := string(in[0].Value) + string(in[1].Value); got != "abcxyz" {
		t.Errorf("input after upper = %q, want %q", got, "abcxyz")
	}
}

func TestUpperAllocations(t *testing.T) {
	in := make([]plugin.Record, 100)
	for i := range in {
		in[i].Value = bytes.Repeat([]byte("abcdefghij"), 10)
	}
	ctx := context.Background()
	// The BatchResult, its Results slice and one slab for every value.
	const want = 3
	if got := testing.AllocsPerRun(100, func() {
		if _, err := (builtin.Upper{}).ProcessBatch(ctx, nil, in); err != nil {
			t.Fatal(err)
		}
	}); got != want {
		t.Errorf("allocations per batch = %v, want %d", got, want)
	}
}

func TestDelayHonoursContext(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		wantErr error
	}{
		{name: "deadline", ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, wantErr: context.DeadlineExceeded},
		{name: "cancel", ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			t0 := time.Now()
			// One hour per record: only the context can end this.
			_, err := builtin.Delay{}.ProcessBatch(ctx, plugin.Config{"ms": strconv.Itoa(builtin.MaxDelayMillis)}, recs("a", "b"))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want one matching %v", err, tt.wantErr)
			}
			if el := time.Since(t0); el > 10*time.Second {
				t.Errorf("returned after %v, want soon after the context ended", el)
			}
		})
	}
}

func TestDelayWaits(t *testing.T) {
	t0 := time.Now()
	if _, err := (builtin.Delay{}).ProcessBatch(context.Background(), plugin.Config{"ms": "5"}, recs("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	if el, want := time.Since(t0), 15*time.Millisecond; el < want {
		t.Errorf("3 records at 5 ms took %v, want ≥ %v", el, want)
	}
}

func TestDoneContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, p := range builtin.All() {
		t.Run(name, func(t *testing.T) {
			if _, err := p.ProcessBatch(ctx, nil, recs("a")); !errors.Is(err, context.Canceled) {
				t.Errorf("error = %v, want one matching context.Canceled", err)
			}
		})
	}
}

type registry struct {
	names []string
	fail  string
}

func (r *registry) RegisterBatch(name string, _ plugin.BatchPlugin) error {
	if name == r.fail {
		return errors.New("taken")
	}
	r.names = append(r.names, name)
	return nil
}

func TestRegister(t *testing.T) {
	var r registry
	if err := builtin.Register(&r); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(builtin.Names(), r.names); diff != "" {
		t.Errorf("registered names (-want +got):\n%s", diff)
	}
	r = registry{fail: builtin.FailName}
	if err := builtin.Register(&r); err == nil {
		t.Error("Register with a failing registrar: nil error, want one")
	}
}

// upperRef is the obvious byte-at-a-time ASCII upper-case.
func upperRef(s []byte) []byte {
	out := make([]byte, len(s))
	for i, c := range s {
		if c >= 'a' && c <= 'z' {
			c -= 32
		}
		out[i] = c
	}
	return out
}

func TestAppendUpperAllBytes(t *testing.T) {
	src := make([]byte, 256)
	for i := range src {
		src[i] = byte(i)
	}
	// Every byte value at every offset within an 8-byte word.
	for shift := range 8 {
		in := append(bytes.Repeat([]byte{'a'}, shift), src...)
		if got, want := builtin.AppendUpper(nil, in), upperRef(in); !bytes.Equal(got, want) {
			t.Fatalf("shift %d: AppendUpper differs from the reference:\n got %q\nwant %q", shift, got, want)
		}
	}
}

func FuzzAppendUpper(f *testing.F) {
	f.Add([]byte("hello, World"), []byte("prefix"))
	f.Add([]byte("\x00\x7f\x80\xff`{@["), []byte(nil))
	f.Fuzz(func(t *testing.T, src, dst []byte) {
		want := append(append([]byte(nil), dst...), upperRef(src)...)
		if got := builtin.AppendUpper(dst, src); !bytes.Equal(got, want) {
			t.Fatalf("AppendUpper(%q, %q) = %q, want %q", dst, src, got, want)
		}
	})
}

func TestDelayHeaderOverridesConfig(t *testing.T) {
	recs := []plugin.Record{
		{Value: []byte("a"), Headers: []plugin.Header{{Key: []byte("ms"), Value: []byte("30")}}},
		{Value: []byte("b")},
	}
	start := time.Now()
	res, err := builtin.Delay{}.ProcessBatch(context.Background(), plugin.Config{"ms": "0"}, recs)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("batch took %v, want at least the header's 30ms", d)
	}
	if len(res.Results) != 2 || string(res.Results[1].Value) != "b" {
		t.Errorf("results = %+v", res.Results)
	}
	recs[0].Headers[0].Value = []byte("x")
	if _, err := (builtin.Delay{}).ProcessBatch(context.Background(), nil, recs); !errors.Is(err, plugin.ErrInvalidInput) {
		t.Errorf("bad header: err = %v, want ErrInvalidInput", err)
	}
}
