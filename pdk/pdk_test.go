package pdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
)

type view struct {
	Value     string
	Dropped   bool
	Unchanged bool
	Code      plugin.Code
	Err       string
}

// run encodes recs with cfg, runs them through k as the host would, and
// decodes the output.
func run(t *testing.T, k *kit, cfg plugin.Config, recs []plugin.Record) ([]view, error) {
	t.Helper()
	msg, err := batch.AppendBatch(nil, &batch.Batch{Job: "j", Plugin: "p", Config: cfg, Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	in := k.alloc(len(msg))
	copy(in, msg)
	out, failed := k.process(in)
	if failed {
		var res [1]plugin.Result
		if err := batch.DecodeEntries(out, make([]plugin.Record, 1), res[:]); err != nil {
			t.Fatalf("batch error output: %v", err)
		}
		return nil, res[0].Err
	}
	// Decode against the host's copy of the records: "unchanged" then
	// aliases them.
	res := make([]plugin.Result, len(recs))
	if err := batch.DecodeEntries(out, recs, res); err != nil {
		t.Fatalf("output does not decode: %v", err)
	}
	vs := make([]view, len(res))
	for i, r := range res {
		vs[i] = view{Value: string(r.Value), Dropped: r.Dropped}
		if len(r.Value) > 0 && len(recs[i].Value) > 0 && &r.Value[0] == &recs[i].Value[0] {
			vs[i].Unchanged = true
		}
		if r.Err != nil {
			vs[i].Code, vs[i].Err = plugin.CodeOf(r.Err), r.Err.Error()
		}
	}
	return vs, nil
}

func values(vs ...string) []plugin.Record {
	recs := make([]plugin.Record, len(vs))
	for i, v := range vs {
		recs[i].Value = []byte(v)
	}
	return recs
}

func TestHandle(t *testing.T) {
	k := &kit{}
	k.register(plugin.Info{Name: "t", Version: "1"}, recordHandler(func(cfg plugin.Config, r plugin.Record) (plugin.Result, error) {
		switch v := string(r.Value); v {
		case "same":
			return plugin.Value(r.Value), nil
		case "drop":
			return plugin.Drop(), nil
		case "bad":
			return plugin.Result{}, plugin.Errorf(plugin.CodeInvalidInput, "bad record")
		case "plain":
			return plugin.Result{}, errors.New("plain error")
		case "panic":
			panic("boom")
		case "huge":
			return plugin.Value(make([]byte, batch.DefaultLimits.MaxValueSize+1)), nil
		default:
			return plugin.Value([]byte(v + cfg.Get("suffix"))), nil
		}
	}))
	got, err := run(t, k, plugin.Config{"suffix": "!"}, values("a", "same", "drop", "bad", "plain", "panic", "huge", ""))
	if err != nil {
		t.Fatal(err)
	}
	want := []view{
		{Value: "a!"},
		{Value: "same", Unchanged: true},
		{Dropped: true},
		{Code: plugin.CodeInvalidInput, Err: "bad record"},
		{Code: plugin.CodeUnknown, Err: "plain error"},
		{Code: plugin.CodePanic, Err: "plugin: panic: boom"},
		{Code: plugin.CodeTooLarge, Err: "batch: limit exceeded: value: 8388609 > limit 8388608"},
		{Value: "!"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	var info plugin.Info
	if err := json.Unmarshal(k.info, &info); err != nil || info.Name != "t" || info.APIVersion != plugin.APIVersion {
		t.Errorf("info = %s (%v), want name t and api_version %s", k.info, err, plugin.APIVersion)
	}
}

func TestHandleTransform(t *testing.T) {
	k := &kit{}
	k.register(plugin.Info{Name: "t", Version: "1"}, transformHandler(func(cfg plugin.Config, dst, v []byte) ([]byte, error) {
		switch string(v) {
		case "err":
			return dst, fmt.Errorf("no: %w", plugin.ErrProcessing)
		case "panic":
			panic("transform")
		case "huge":
			return append(dst, make([]byte, batch.DefaultLimits.MaxValueSize+1)...), nil
		case "wrong":
			return []byte("unrelated"), nil
		case "truncate":
			return dst[:len(dst)-4], nil
		}
		return append(append(dst, v...), v...), nil
	}))
	big := string(bytes.Repeat([]byte("x"), 100_000)) // makes dst grow and move
	got, err := run(t, k, nil, values("ab", "err", "", "panic", big, "huge", "wrong", "truncate", "c"))
	if err != nil {
		t.Fatal(err)
	}
	misuse := "pdk: a TransformFunc must append to dst and return the extended slice"
	want := []view{
		{Value: "abab"},
		{Code: plugin.CodeProcessing, Err: "no: plugin: processing failed"},
		{},
		{Code: plugin.CodePanic, Err: "plugin: panic: transform"},
		{Value: big + big},
		{Code: plugin.CodeTooLarge, Err: "pdk: value of 8388609 bytes is over the 8388608-byte limit"},
		{Code: plugin.CodeUnknown, Err: misuse},
		{Code: plugin.CodeUnknown, Err: misuse},
		{Value: "cc"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
}

func TestHandleBatch(t *testing.T) {
	k := &kit{}
	k.register(plugin.Info{Name: "t", Version: "1"}, batchHandler(func(cfg plugin.Config, recs []plugin.Record, out []plugin.Result) error {
		if cfg.Get("fail") != "" {
			return errors.New("failing as asked")
		}
		if cfg.Get("panic") != "" {
			panic("batch")
		}
		for i := range recs {
			if i%2 == 0 {
				out[i] = plugin.Value(recs[i].Value)
			} else {
				out[i] = plugin.Drop()
			}
		}
		return nil
	}))
	got, err := run(t, k, nil, values("a", "b", "c"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]view{{Value: "a", Unchanged: true}, {Dropped: true}, {Value: "c", Unchanged: true}}, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		cfg  plugin.Config
		code plugin.Code
		msg  string
	}{
		{plugin.Config{"fail": "1"}, plugin.CodeProcessing, "failing as asked"},
		{plugin.Config{"panic": "1"}, plugin.CodePanic, "plugin: panic: batch"},
	} {
		_, err := run(t, k, tt.cfg, values("a"))
		if plugin.CodeOf(err) != tt.code || err == nil || err.Error() != tt.msg {
			t.Errorf("config %v: batch error = %v (code %s), want %q (code %s)", tt.cfg, err, plugin.CodeOf(err), tt.msg, tt.code)
		}
	}
}

func TestOnConfig(t *testing.T) {
	k := &kit{}
	calls := 0
	var suffix string
	k.onConfig = func(cfg plugin.Config) error {
		calls++
		if cfg.Get("suffix") == "" {
			return errors.New("config suffix is required")
		}
		suffix = cfg.Get("suffix")
		return nil
	}
	k.register(plugin.Info{Name: "t", Version: "1"}, recordHandler(func(_ plugin.Config, r plugin.Record) (plugin.Result, error) {
		return plugin.Value(append(r.Value, suffix...)), nil
	}))
	for i, tt := range []struct {
		cfg   plugin.Config
		want  string
		err   string
		calls int
	}{
		{plugin.Config{"suffix": "!"}, "a!", "", 1},
		{plugin.Config{"suffix": "!"}, "a!", "", 1}, // same config: not called again
		{plugin.Config{"suffix": "?"}, "a?", "", 2},
		{nil, "", "config suffix is required", 3},
		{nil, "", "config suffix is required", 4}, // refused configs are not remembered
		{plugin.Config{"suffix": "?"}, "a?", "", 5},
	} {
		got, err := run(t, k, tt.cfg, values("a"))
		switch {
		case tt.err != "":
			if err == nil || err.Error() != tt.err || !errors.Is(err, plugin.ErrInvalidInput) {
				t.Errorf("batch %d: error = %v, want %q matching plugin.ErrInvalidInput", i, err, tt.err)
			}
		case err != nil:
			t.Errorf("batch %d: %v", i, err)
		case got[0].Value != tt.want:
			t.Errorf("batch %d: value %q, want %q", i, got[0].Value, tt.want)
		}
		if calls != tt.calls {
			t.Errorf("batch %d: OnConfig called %d times, want %d", i, calls, tt.calls)
		}
	}
}

func TestProcessRefuses(t *testing.T) {
	k := &kit{}
	out, failed := k.process([]byte("whatever"))
	if !failed || !bytes.Contains(out, []byte("no plugin registered")) {
		t.Errorf("unregistered kit: failed %v, output %q; want the ErrNoPlugin message", failed, out)
	}
	k.register(plugin.Info{Name: "t"}, recordHandler(func(plugin.Config, plugin.Record) (plugin.Result, error) { return plugin.Drop(), nil }))
	out, failed = k.process([]byte("DFB\x01 not a batch"))
	var res [1]plugin.Result
	if !failed || batch.DecodeEntries(out, make([]plugin.Record, 1), res[:]) != nil || plugin.CodeOf(res[0].Err) != plugin.CodeInvalidInput {
		t.Errorf("malformed batch: failed %v, output %q; want an invalid-input batch error", failed, out)
	}
	out, failed = k.refuse(16, 4)
	if !failed || !bytes.Contains(out, []byte("outside the region")) {
		t.Errorf("refuse: failed %v, output %q", failed, out)
	}
}

func TestAllocReuses(t *testing.T) {
	k := &kit{}
	a := k.alloc(100)
	b := k.alloc(50)
	if len(a) != 100 || len(b) != 50 || &a[0] != &b[0] {
		t.Errorf("alloc(50) after alloc(100) did not reuse the region")
	}
	if c := k.alloc(200); len(c) != 200 || &c[0] == &a[0] {
		t.Errorf("alloc(200) did not grow the region")
	}
	if k.alloc(-1) != nil {
		t.Error("alloc(-1) != nil")
	}
}

// FuzzProcess: no input message makes the kit panic or produce output the
// host cannot decode.
func FuzzProcess(f *testing.F) {
	msg, _ := batch.AppendBatch(nil, &batch.Batch{Job: "j", Config: plugin.Config{"k": "v"}, Records: values("a", "", "same")})
	f.Add(msg)
	f.Add([]byte{})
	f.Add([]byte("DFB\x01"))
	k := &kit{}
	k.register(plugin.Info{Name: "f"}, recordHandler(func(_ plugin.Config, r plugin.Record) (plugin.Result, error) {
		if len(r.Value) == 0 {
			return plugin.Drop(), nil
		}
		return plugin.Value(r.Value), nil
	}))
	f.Fuzz(func(t *testing.T, msg []byte) {
		in := k.alloc(len(msg))
		copy(in, msg)
		out, failed := k.process(in)
		if failed {
			var res [1]plugin.Result
			if err := batch.DecodeEntries(out, make([]plugin.Record, 1), res[:]); err != nil || res[0].Err == nil {
				t.Fatalf("batch error output %q does not decode to an error: %v", out, err)
			}
			return
		}
		var b batch.Batch
		if err := batch.DecodeBatch(msg, &b); err != nil {
			t.Fatalf("kit accepted a message the decoder refuses: %v", err)
		}
		res := make([]plugin.Result, len(b.Records))
		if err := batch.DecodeEntries(out, b.Records, res); err != nil {
			t.Fatalf("output does not decode: %v", err)
		}
	})
}
