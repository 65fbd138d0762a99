package wasm

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataflare/dataflare/plugin"
)

// mapKV is a KV over a map: the host functions' logic is what these tests
// try to break; the worker's real cache over NATS KV is tested in
// internal/kvcache and, with these functions, in package worker.
type mapKV struct {
	values map[string]string // "bucket/key" → value
	err    error
	calls  atomic.Int64
}

func (m *mapKV) Get(ctx context.Context, bucket, key string) ([]byte, bool, error) {
	m.calls.Add(1)
	if m.err != nil {
		return nil, false, m.err
	}
	v, ok := m.values[bucket+"/"+key]
	return []byte(v), ok, nil
}

// lines returns the JSON log lines written to s.
func (s *syncBuffer) lines() []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			panic(l)
		}
		out = append(out, m)
	}
	return out
}

// loadCaps loads testdata/caps with grants on r.
func loadCaps(t *testing.T, r *Runtime, grants ...string) *Plugin {
	t.Helper()
	mod := module(t, "caps")
	p, err := r.LoadLimited(context.Background(), mod, Digest(mod), Limits{Grants: grants})
	if err != nil {
		t.Fatalf("LoadLimited(caps, %q): %v", grants, err)
	}
	t.Cleanup(p.Close)
	return p
}

// answer is one record's result from caps: the host's answer and the value
// read.
type answer struct {
	code  int32
	value string
}

func runCaps(t *testing.T, ctx context.Context, p *Plugin, cmds ...string) ([]answer, error) {
	t.Helper()
	recs := make([]plugin.Record, len(cmds))
	for i, c := range cmds {
		recs[i] = plugin.Record{Value: []byte(c)}
	}
	res, err := p.ProcessBatch(ctx, nil, recs)
	if err != nil {
		return nil, err
	}
	out := make([]answer, len(cmds))
	for i, r := range res.Results {
		if r.Err != nil || len(r.Value) < 4 {
			t.Fatalf("%q: result %+v", cmds[i], r)
		}
		out[i] = answer{int32(binary.LittleEndian.Uint32(r.Value)), string(r.Value[4:])}
	}
	return out, nil
}

// A module importing a capability its policy does not grant is refused at
// load (and so at push, which validates with the policy), saying which
// grant it needs; so is an import the host module does not have, or one of
// another type.
func TestCapabilitiesRefusedWithoutGrant(t *testing.T) {
	r := newRuntime(t)
	ctx := context.Background()
	for _, tt := range []struct {
		module, message string
		grants          []string
	}{
		{"caps", "dataflare.kv_get: the module's policy does not grant kv:BUCKET (push it with --grant kv:BUCKET)", nil},
		{"caps", "dataflare.kv_get: the module's policy does not grant kv:BUCKET", []string{"log"}},
		{"caps", "dataflare.log: the module's policy does not grant log (push it with --grant log)", []string{"kv:users"}},
		{"caps_unknown", `dataflare.exec: host module "dataflare" has kv_get and log only`, []string{"log", "kv:users"}},
		{"caps_badtype", "dataflare.kv_get has type (i32) -> (i32), want (i32, i32, i32, i32, i32, i32) -> (i32)", []string{"kv:users"}},
	} {
		mod := module(t, tt.module)
		_, err := r.ValidateLimited(ctx, mod, Limits{Grants: tt.grants})
		if !errors.Is(err, ErrForbiddenImport) || !strings.Contains(err.Error(), tt.message) {
			t.Errorf("%s with grants %q: error %v, want ErrForbiddenImport saying %q", tt.module, tt.grants, err, tt.message)
		}
	}
	if _, err := r.ValidateLimited(ctx, module(t, "caps"), Limits{Grants: []string{"log", "kv:users"}}); err != nil {
		t.Errorf("caps with its grants: %v", err)
	}
	if _, err := r.ValidateLimited(ctx, module(t, "caps"), Limits{Grants: []string{"kv:"}}); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("grant kv: without a bucket: %v, want ErrInvalidOption", err)
	}
}

// Every bad argument a guest can pass gets an answer, never a trap or a
// read outside its memory; a bucket not granted is denied; the batch's
// other records and the instance are unaffected.
func TestCapabilitiesBadArguments(t *testing.T) {
	kv := &mapKV{values: map[string]string{
		"users/alice":  "Alice A.",
		"users/big":    strings.Repeat("x", 5000),
		"secret/alice": "the secret",
	}}
	logs := &syncBuffer{}
	r := newRuntime(t, WithKV(kv), WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	p := loadCaps(t, r, "kv:users", "log")
	cmds := []string{
		"galice", "gnobody", "salice", "gbig", "dalice", "palice", "kalice", "oalice", "Oalice",
		"ga..b", "g.a", "g", "ga b", "ga*", "lhello", "m", "vhi",
	}
	want := []answer{
		{8, "Alice A."}, {KVNotFound, ""}, {8, ""}, {5000, ""}, {CapDenied, ""}, {CapBadArgs, ""}, {CapBadArgs, ""},
		{CapBadArgs, ""}, {CapBadArgs, ""},
		{CapBadArgs, ""}, {CapBadArgs, ""}, {CapBadArgs, ""}, {CapBadArgs, ""}, {CapBadArgs, ""}, {0, ""}, {CapBadArgs, ""}, {CapBadArgs, ""},
	}
	for round := range 2 { // the same instance again
		got, err := runCaps(t, context.Background(), p, cmds...)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for i := range cmds {
			if got[i] != want[i] {
				t.Errorf("round %d: %q: got %+v, want %+v", round, cmds[i], got[i], want[i])
			}
		}
	}
	if st := p.Stats(); st.Traps != 0 || st.Discarded != 0 || st.Created != 1 {
		t.Errorf("stats %+v: want no trap and one instance", st)
	}
	// Only granted buckets and valid keys reached the KV: galice, gnobody,
	// salice, gbig, twice.
	if n := kv.calls.Load(); n != 8 {
		t.Errorf("KV read %d times, want 8", n)
	}
	var lines int
	for _, l := range logs.lines() {
		if l["msg"] == "hello" {
			lines++
			if l["plugin"] != "caps@1.0.0 ("+short(p.Digest())+")" || l["level"] != "INFO" {
				t.Errorf("log line %v: want the plugin named, level INFO", l)
			}
		}
	}
	if lines != 2 {
		t.Errorf("%d log lines, want 2: %v", lines, logs.lines())
	}
}

// A guest calling kv_get in a loop that never ends is stopped at its
// deadline like any other, and the next batch runs on a new instance.
func TestCapabilitiesLoopStopped(t *testing.T) {
	kv := &mapKV{values: map[string]string{"users/alice": "Alice A."}}
	r := newRuntime(t, WithKV(kv))
	p := loadCaps(t, r, "kv:users", "log")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := runCaps(t, ctx, p, "Lalice")
	if !errors.Is(err, plugin.ErrTimeout) {
		t.Fatalf("loop: %v, want a timeout", err)
	}
	got, err := runCaps(t, context.Background(), p, "Galice", "galice")
	if err != nil || got[0] != (answer{8, ""}) || got[1] != (answer{8, "Alice A."}) {
		t.Fatalf("after the loop: %+v, %v", got, err)
	}
	if st := p.Stats(); st.Timeouts != 1 || st.KVCalls < 100_002 {
		t.Errorf("stats %+v: want 1 timeout and over 100,002 kv_get calls", st)
	}
}

// A bucket that cannot be read answers KVUnavailable and the worker's log
// says why, at most once a second however often the guest asks; a runtime
// without a KV answers the same.
func TestCapabilitiesKVUnavailable(t *testing.T) {
	logs := &syncBuffer{}
	kv := &mapKV{err: errors.New("kv users: nats: timeout")}
	r := newRuntime(t, WithKV(kv), WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	p := loadCaps(t, r, "kv:users", "log")
	got, err := runCaps(t, context.Background(), p, "galice", "Galice")
	if err != nil || got[0].code != KVUnavailable || got[1].code != KVUnavailable {
		t.Fatalf("got %+v, %v: want KVUnavailable", got, err)
	}
	var warned int
	for _, l := range logs.lines() {
		if l["msg"] == "wasm: kv_get failed" && l["error"] == "kv users: nats: timeout" && l["bucket"] == "users" {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings for 100,001 failed calls, want 1: %v", warned, logs.lines())
	}

	p = loadCaps(t, newRuntime(t), "kv:users", "log")
	if got, err := runCaps(t, context.Background(), p, "galice"); err != nil || got[0].code != KVUnavailable {
		t.Errorf("without a KV: %+v, %v", got, err)
	}
}

// A module's log lines beyond its rate are dropped and counted, and the
// next line written says how many; a long line is cut, and whatever bytes
// the guest sends stay one line of the log.
func TestCapabilitiesLogRate(t *testing.T) {
	logs := &syncBuffer{}
	r := newRuntime(t, WithLogRate(1e-3, 10), WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	p := loadCaps(t, r, "log", "kv:users")
	got, err := runCaps(t, context.Background(), p, "Bspam")
	if err != nil || got[0].code != 10 {
		t.Fatalf("got %+v, %v: want 10 lines written of 1,000", got, err)
	}
	if st := p.Stats(); st.LogLines != 10 || st.LogDropped != 990 {
		t.Errorf("stats %+v: want 10 lines, 990 dropped", st)
	}
	if n := len(logs.lines()); n != 10 {
		t.Errorf("%d lines in the log, want 10", n)
	}

	logs = &syncBuffer{}
	r = newRuntime(t, WithLogRate(1e6, 1), WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	p = loadCaps(t, r, "log", "kv:users")
	long := "l" + "line one\nline two \xff\xfe " + strings.Repeat("y", 3000)
	if got, err := runCaps(t, context.Background(), p, long); err != nil || got[0].code != 0 {
		t.Fatalf("long line: %+v, %v", got, err)
	}
	lines := logs.lines()
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1", len(lines))
	}
	msg, _ := lines[0]["msg"].(string)
	if len(msg) > maxLogLine+8 || !strings.HasPrefix(msg, "line one\nline two \uFFFD") || lines[0]["truncated_from"] != float64(len(long)-1) {
		t.Errorf("line %v: want the message cut at %d bytes, invalid UTF-8 replaced, truncated_from %d", lines[0], maxLogLine, len(long)-1)
	}
}
