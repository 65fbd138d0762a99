package proto_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/hist"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// heartbeat returns a heartbeat as a busy worker sends it.
func heartbeat() proto.Heartbeat {
	started := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var batch, rec hist.Histogram
	for i := range 50 {
		batch.Record(time.Duration(i+1) * time.Millisecond)
		rec.RecordN(time.Duration(i+1)*10*time.Microsecond, 100)
	}
	ps := fleet.PoolStats{Hits: 50, Misses: 10, HitRate: 50.0 / 60, BudgetBytes: 1 << 30, OwnedBytes: 1 << 20, Pressure: 0.001}
	for i := range 5 {
		ps.Tiers = append(ps.Tiers, fleet.PoolTier{Tier: "t", Size: 4096 << (2 * i), Idle: 3, Hits: 10, Misses: 2, HitRate: 10.0 / 12})
	}

	return proto.Heartbeat{
		Worker:   "w-1",
		Host:     "node-a",
		PID:      4242,
		Seq:      17,
		Started:  started,
		At:       started.Add(17 * time.Second).In(time.FixedZone("CEST", 2*3600)),
		Interval: time.Second,
		Parallel: 4,
		InFlight: 2,
		Draining: true,
		Plugins: []proto.PluginBeat{
			{
				Name:     "upper",
				Native:   true,
				Estimate: fleet.Estimate{Fixed: 50 * time.Microsecond, PerRecord: 200 * time.Nanosecond, RecordBytes: 512.5, Samples: 40, Hint: 1000},
				Metrics: fleet.PluginMetrics{
					Name:           "upper",
					Info:           plugin.Info{Name: "upper", Version: "1.0.0", Type: plugin.Transformer, APIVersion: plugin.APIVersion},
					State:          plugin.Running,
					Health:         fleet.Degraded,
					HealthReason:   "error rate 0.2 above 0.1",
					TotalProcessed: 5000, Succeeded: 4000, Failed: 1000, Batches: 50, ErrorRate: 0.2,
					Window: time.Minute, WindowSpan: 17 * time.Second, Throughput: 294.1,
					BatchSize: 100, InFlight: 1,
					BatchLatency:    fleet.Summarize(&batch),
					RecordLatency:   fleet.Summarize(&rec),
					BatchHistogram:  batch,
					RecordHistogram: rec,
					LastBatch:       started.Add(16 * time.Second),
				},
			},
			{Name: "geo", Digests: []string{"sha256:aa", "sha256:bb"}},
		},
		Pool:     ps,
		Pressure: 0.25,
		Runtime:  fleet.RuntimeStats{GoVersion: "go1.26", GOMAXPROCS: 2, Goroutines: 40, HeapBytes: 8 << 20, GCCycles: 3},
	}
}

// heartbeatOpts compare heartbeats after a JSON round trip: times by
// Equal (cmp's default for time.Time), histograms by value, and an empty
// slice like a nil one (omitempty drops it).
var heartbeatOpts = cmp.Options{
	cmp.Comparer(func(a, b hist.Histogram) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

func TestHeartbeatJSON(t *testing.T) {
	hb := heartbeat()
	b, err := json.Marshal(hb)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var got proto.Heartbeat
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if diff := cmp.Diff(hb, got, heartbeatOpts); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// The field names other tools read.
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"worker", "seq", "started", "at", "interval_ns", "parallel", "in_flight", "draining", "plugins", "pool", "pressure", "runtime"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("heartbeat JSON has no %q: %s", k, b)
		}
	}
	if _, ok := raw["leaving"]; ok {
		t.Errorf("heartbeat JSON has \"leaving\" though it is false")
	}
}

func FuzzHeartbeat(f *testing.F) {
	b, err := json.Marshal(heartbeat())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"worker":"w","seq":1,"started":"2024-01-01T00:00:00Z","at":"2024-01-01T00:00:01.5+02:00","interval_ns":1000000000,"plugins":[]}`))
	f.Add([]byte(`{"plugins":[{"name":"p","digests":[],"metrics":{"batch_histogram":{"count":0}}}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var first proto.Heartbeat
		if err := json.Unmarshal(b, &first); err != nil {
			return
		}
		again, err := json.Marshal(first)
		if err != nil {
			t.Fatalf("a decoded heartbeat does not encode: %v", err)
		}
		var second proto.Heartbeat
		if err := json.Unmarshal(again, &second); err != nil {
			t.Fatalf("an encoded heartbeat does not decode: %v\n%s", err, again)
		}
		if diff := cmp.Diff(first, second, heartbeatOpts); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func TestDeadLetterMsg(t *testing.T) {
	dl := &fleet.DeadLetter{
		Job: "acme.j1", Index: 1234, Plugin: "upper", Error: "plugin: wasm trap", Value: []byte{0, 1, 2},
		Worker: "w-1", Attempts: 4, At: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
	}
	m := proto.DeadLetterMsg(dl)
	if m.Subject != "df.dead.acme.j1" {
		t.Errorf("Subject = %q, want df.dead.acme.j1", m.Subject)
	}
	if got := m.Header.Get(proto.HeaderMsgID); got != "acme.j1.dead.1234" {
		t.Errorf("%s = %q, want acme.j1.dead.1234", proto.HeaderMsgID, got)
	}
	var back fleet.DeadLetter
	if err := json.Unmarshal(m.Data, &back); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	want := *dl
	want.ValueBytes, want.ValueSHA256 = 3, "sha256:ae4b3280e56e2faf83f414a6e3dabe9d5fbe18976544c05fed121accb85b53fc"
	if diff := cmp.Diff(want, back); diff != "" {
		t.Errorf("data (-want +got):\n%s", diff)
	}
	// Another record of the job has another id; a batch id is never a
	// dead letter's.
	if a, b := proto.DeadLetterMsg(dl).Header.Get(proto.HeaderMsgID), proto.DeadLetterMsg(&fleet.DeadLetter{Job: "acme.j1", Index: 1235}).Header.Get(proto.HeaderMsgID); a == b {
		t.Errorf("two records share the id %q", a)
	}
	if id := proto.DeadLetterMsg(&fleet.DeadLetter{Job: "acme.j1", Index: 3}).Header.Get(proto.HeaderMsgID); id == proto.ResultMsgID("acme.j1", 3) {
		t.Errorf("a dead letter's id %q is a batch's", id)
	}
}

// RELIABILITY row 23: the dead letter of a record of several MB is cut to
// fit the dead-letter store and says so, with the whole value's size and
// digest.
func TestDeadLetterOfAHugeRecord(t *testing.T) {
	value := bytes.Repeat([]byte("poison "), 1<<20) // 7 MiB
	key := bytes.Repeat([]byte("k"), 100<<10)
	m := proto.DeadLetterMsg(&fleet.DeadLetter{Job: "acme.j1", Index: 7, Key: key, Value: value, Error: strings.Repeat("e", 1<<20)})
	if len(m.Data) > proto.MaxDeadLetterBytes {
		t.Fatalf("entry of %d bytes, over MaxDeadLetterBytes %d", len(m.Data), proto.MaxDeadLetterBytes)
	}
	var got fleet.DeadLetter
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(value)
	if !got.Truncated || got.ValueBytes != len(value) || got.ValueSHA256 != "sha256:"+hex.EncodeToString(sum[:]) ||
		!bytes.HasPrefix(value, got.Value) || !bytes.HasPrefix(key, got.Key) {
		t.Errorf("entry: truncated %v, value_bytes %d, sha %s, %d value bytes kept", got.Truncated, got.ValueBytes, got.ValueSHA256, len(got.Value))
	}
	small := proto.DeadLetterMsg(&fleet.DeadLetter{Job: "acme.j1", Index: 8, Value: []byte("x")})
	var s fleet.DeadLetter
	if err := json.Unmarshal(small.Data, &s); err != nil || s.Truncated || string(s.Value) != "x" || s.ValueBytes != 1 {
		t.Errorf("a small record's entry: %+v, %v", s, err)
	}
}
