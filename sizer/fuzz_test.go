package sizer

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// checkSize fails t unless n is a size c may return for avgBytes.
func checkSize(t *testing.T, c *Controller, n, avgBytes int) {
	t.Helper()
	cfg := c.Config()
	if n < 1 || n > cfg.Max {
		t.Fatalf("Size(%d) = %d; outside [1, %d]", avgBytes, n, cfg.Max)
	}
	if avgBytes > 0 && n > 1 && n*avgBytes > cfg.MaxBytes {
		t.Fatalf("Size(%d) = %d; over MaxBytes %d", avgBytes, n, cfg.MaxBytes)
	}
	st := c.Snapshot()
	if _, err := json.Marshal(st); err != nil {
		t.Fatalf("Snapshot %+v does not marshal: %v", st, err)
	}
	if e := st.Estimate; e.Fixed < 0 || e.PerRecord < 0 || e.Samples < 0 || e.Hint < 0 || !(e.RecordBytes >= 0) || math.IsInf(e.RecordBytes, 0) {
		t.Fatalf("merged estimate out of range: %+v", e)
	}
}

// FuzzEstimateJSON: an Estimate decoded from a heartbeat, however odd
// (zero, negative or huge durations, counts and sizes), merged with a sane
// one, never yields a size outside [1, Max] or over the byte limit, nor a
// status that does not marshal.
func FuzzEstimateJSON(f *testing.F) {
	f.Add([]byte(`{"fixed_ns":20000000,"per_record_ns":160000,"record_bytes":100,"samples":40}`), 100, 0.5)
	f.Add([]byte(`{"fixed_ns":-1,"per_record_ns":-9223372036854775808,"samples":-3}`), 0, 0.0)
	f.Add([]byte(`{"fixed_ns":9223372036854775807,"per_record_ns":9223372036854775807,"samples":9223372036854775807}`), 1, 1.0)
	f.Add([]byte(`{"per_record_ns":0,"fixed_ns":0,"samples":1,"record_bytes":1e308,"hint":9223372036854775807}`), -5, 0.95)
	f.Add([]byte(`{"samples":1,"record_bytes":5e-324}`), 1<<40, -1.0)
	f.Add([]byte(`not json`), 10, 2.0)
	f.Fuzz(func(t *testing.T, data []byte, avgBytes int, pressure float64) {
		var est Estimate
		if err := json.Unmarshal(data, &est); err != nil {
			return
		}
		clock := newFakeClock()
		c, err := New(Config{Max: 10000, MaxBytes: 1 << 20, Clock: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		c.Report("sane", Estimate{Fixed: 20 * ms, PerRecord: 160 * us, Samples: 40, RecordBytes: 100})
		c.SetPressure(pressure)
		for range 12 {
			c.Report("odd", est)
			checkSize(t, c, c.Size(avgBytes), avgBytes)
			clock.Advance(c.Config().Interval)
		}
		c.Forget("sane")
		checkSize(t, c, c.Size(avgBytes), avgBytes)
	})
}

// FuzzEstimator: any sequence of observations (sizes, byte counts and
// latencies of any magnitude) gives a non-negative, finite estimate, and a
// usable size.
func FuzzEstimator(f *testing.F) {
	obs := func(vals ...int64) []byte {
		var b []byte
		for _, v := range vals {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
		return b
	}
	f.Add(obs(100, 1000, int64(36*ms), 200, 2000, int64(52*ms), 400, 4000, int64(84*ms)))
	f.Add(obs(1, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1e9))
	f.Add(obs(math.MaxInt64, math.MaxInt64, math.MaxInt64, 1, -1, 1, math.MaxInt64, 0, 0))
	f.Add(obs(-1, -1, -1, 0, 0, 0, 5, 5, math.MinInt64))
	f.Fuzz(func(t *testing.T, data []byte) {
		e := NewEstimator(int(len(data) % 40))
		for len(data) >= 24 {
			n := int(binary.LittleEndian.Uint64(data))
			b := int(binary.LittleEndian.Uint64(data[8:]))
			l := time.Duration(binary.LittleEndian.Uint64(data[16:]))
			data = data[24:]
			e.Observe(n, b, l)
			est := e.Estimate()
			if est.Fixed < 0 || est.PerRecord < 0 || !(est.RecordBytes >= 0) || math.IsInf(est.RecordBytes, 0) {
				t.Fatalf("Estimate() = %+v after Observe(%d, %d, %v)", est, n, b, l)
			}
		}
		c, err := New(Config{Clock: newFakeClock().Now})
		if err != nil {
			t.Fatal(err)
		}
		c.Report("w", e.Estimate())
		checkSize(t, c, c.Size(0), 0)
	})
}
