package worker

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/plugin"
)

// step is one event in a breaker's life, at a time on a fake clock, with
// what the breaker must answer or become.
type step struct {
	at time.Duration // since the start
	op string        // "admit", "admit-last", "ok", "fail", "none", "whole", with a "probe-" prefix for the probe's verdict

	// For admit: the pass wanted. For whole: whether the batch is out.
	want pass
	out  bool
	// The state wanted after the step.
	state fleet.BreakerState
}

func TestBreakerStateMachine(t *testing.T) {
	cfg := BreakerConfig{Threshold: 3, Backoff: time.Second, MaxBackoff: 3 * time.Second}
	s := time.Second
	const (
		closed   = fleet.BreakerClosed
		open     = fleet.BreakerOpen
		halfOpen = fleet.BreakerHalfOpen
	)
	for _, tc := range []struct {
		name  string
		steps []step
		// What the breaker reports at the end.
		opens    uint64
		recovery time.Duration
	}{{
		name: "a success resets the count",
		steps: []step{
			{op: "fail", state: closed}, {op: "fail", state: closed}, {op: "ok", state: closed},
			{op: "fail", state: closed}, {op: "fail", state: closed},
			{op: "admit", want: pass{run: true}, state: closed},
		},
	}, {
		name: "opens after the threshold; released until the backoff has passed",
		steps: []step{
			{op: "fail", state: closed}, {op: "fail", state: closed}, {at: s / 2, op: "fail", state: open},
			{at: s, op: "admit", want: pass{retryIn: s / 2}, state: open},
			// On its last delivery a batch runs anyway, not as a probe.
			{at: s, op: "admit-last", want: pass{run: true}, state: open},
			// Its failure changes nothing; no bisection.
			{at: s, op: "whole", out: true, state: open},
			{at: s, op: "fail", state: open},
			{at: 3 * s / 2, op: "admit", want: pass{run: true, probe: true, reset: true, halfOpened: true}, state: halfOpen},
			// One probe at a time: the others are released for a backoff.
			{at: 3 * s / 2, op: "admit", want: pass{retryIn: s}, state: halfOpen},
			{at: 3 * s / 2, op: "admit-last", want: pass{run: true}, state: halfOpen},
			{at: 2 * s, op: "fail", state: halfOpen}, // not the probe's: the probe decides
			{at: 2 * s, op: "probe-ok", state: closed},
			{at: 2 * s, op: "admit", want: pass{run: true}, state: closed},
		},
		opens: 1, recovery: 3 * s / 2,
	}, {
		name: "a failed probe opens it again for twice as long, up to the maximum",
		steps: []step{
			{op: "fail"}, {op: "fail"}, {op: "fail", state: open},
			{at: s, op: "admit", want: pass{run: true, probe: true, reset: true, halfOpened: true}, state: halfOpen},
			{at: s, op: "probe-fail", state: open},
			{at: 2 * s, op: "admit", want: pass{retryIn: s}, state: open},
			{at: 3 * s, op: "admit", want: pass{run: true, probe: true, reset: true, halfOpened: true}, state: halfOpen},
			{at: 3 * s, op: "probe-fail", state: open}, // 4 s, capped at 3 s
			{at: 5 * s, op: "admit", want: pass{retryIn: s}, state: open},
			{at: 6 * s, op: "admit", want: pass{run: true, probe: true, reset: true, halfOpened: true}, state: halfOpen},
			{at: 6 * s, op: "probe-fail", state: open},
			{at: 8 * s, op: "admit", want: pass{retryIn: s}, state: open},
			{at: 9 * s, op: "admit", want: pass{run: true, probe: true, reset: true, halfOpened: true}, state: halfOpen},
			{at: 10 * s, op: "probe-ok", state: closed},
		},
		// Recovery runs from the first open; reopening is not an open.
		opens: 1, recovery: 10 * s,
	}, {
		name: "a probe that says nothing lets the next batch probe, without a second reset",
		steps: []step{
			{op: "fail"}, {op: "fail"}, {op: "fail", state: open},
			{at: s, op: "admit", want: pass{run: true, probe: true, reset: true, halfOpened: true}, state: halfOpen},
			{at: s, op: "probe-none", state: halfOpen},
			{at: s, op: "admit", want: pass{run: true, probe: true}, state: halfOpen},
			{at: s, op: "probe-ok", state: closed},
		},
		opens: 1, recovery: s,
	}, {
		name: "a batch that failed whole is bisected until its failure would open the breaker",
		steps: []step{
			{op: "whole", out: false, state: closed}, {op: "fail", state: closed}, // its isolation found no good record
			{op: "whole", out: false, state: closed}, {op: "ok", state: closed}, // this one did: it holds poison
			{op: "fail", state: closed}, {op: "fail", state: closed},
			{op: "whole", out: true, state: open},
			{at: s, op: "admit", want: pass{run: true, probe: true, reset: true, halfOpened: true}, state: halfOpen},
			{at: s, op: "probe-whole", out: true, state: open},
		},
		opens: 1,
	}, {
		name: "a success on a last delivery closes an open breaker",
		steps: []step{
			{op: "fail"}, {op: "fail"}, {op: "fail", state: open},
			{at: s / 4, op: "admit-last", want: pass{run: true}, state: open},
			{at: s / 4, op: "ok", state: closed},
			{at: s / 4, op: "fail", state: closed},
		},
		opens: 1, recovery: s / 4,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
			b := newBreaker(cfg, start)
			for i, st := range tc.steps {
				now := start.Add(st.at)
				op, probe := st.op, false
				if len(op) > 6 && op[:6] == "probe-" {
					op, probe = op[6:], true
				}
				switch op {
				case "admit", "admit-last":
					if got := b.admit(now, op == "admit-last"); got != st.want {
						t.Fatalf("step %d (%s at %v): pass = %+v, want %+v", i, st.op, st.at, got, st.want)
					}
				case "ok":
					b.record(now, probe, succeeded)
				case "fail":
					b.record(now, probe, failed)
				case "none":
					b.record(now, probe, noVerdict)
				case "whole":
					if out, _ := b.failWhole(now, probe); out != st.out {
						t.Fatalf("step %d (%s at %v): out = %v, want %v", i, st.op, st.at, out, st.out)
					}
				default:
					t.Fatalf("step %d: unknown op %q", i, st.op)
				}
				if st.state != "" && b.state != st.state {
					t.Fatalf("step %d (%s at %v): state %s, want %s", i, st.op, st.at, b.state, st.state)
				}
			}
			got := b.status()
			if got.Opens != tc.opens || got.LastRecovery != tc.recovery {
				t.Errorf("opens %d, last recovery %v; want %d, %v", got.Opens, got.LastRecovery, tc.opens, tc.recovery)
			}
		})
	}
}

// TestBreakersMetrics: tickets through the worker's breakers, on a fake
// clock, move the breaker gauge, the opens counter and the recovery
// histogram, and the status lists the breaker once it has opened.
func TestBreakersMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg, err := BreakerConfig{Threshold: 2, Backoff: time.Second}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	bs := newBreakers(cfg, nil, reg, "w1", slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	bs.now = func() time.Time { return now }
	cause := &plugin.Error{Code: plugin.CodeProcessing, Message: "broken"}
	key := "p@sha256:0123"
	batch := func(last bool) *ticket {
		tk := bs.admit(key, "p", last, true)
		t.Cleanup(tk.finish)
		return tk
	}
	gauge := func() float64 { return value(t, bs.open.WithLabelValues("p")).GetGauge().GetValue() }

	tk := batch(false)
	if out, _ := tk.failedWhole(cause); out {
		t.Fatal("the first failure put the plugin out of service")
	}
	tk.failed(cause)
	if len(bs.status()) != 0 {
		t.Errorf("status lists a breaker that never opened: %v", bs.status())
	}
	out, retryIn := batch(false).failedWhole(cause)
	if !out || retryIn != time.Second || gauge() != 1 || value(t, bs.opens.WithLabelValues("p")).GetCounter().GetValue() != 1 {
		t.Fatalf("second failure: out %v retry in %v, gauge %v: want out, 1s, 1", out, retryIn, gauge())
	}
	now = now.Add(300 * time.Millisecond)
	if tk := batch(false); tk.run || tk.retryIn != 700*time.Millisecond {
		t.Errorf("while open: run %v, retry in %v; want released for 700ms", tk.run, tk.retryIn)
	}
	now = now.Add(time.Second)
	probe := batch(false)
	if !probe.run || !probe.probe || !probe.reset {
		t.Fatalf("after the backoff: %+v, want the probe, with a reset", probe.pass)
	}
	probe.succeeded()
	if gauge() != 0 {
		t.Errorf("gauge %v after the recovery, want 0", gauge())
	}
	if h := value(t, bs.recovery.WithLabelValues("p").(prometheus.Metric)).GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() != 1.3 {
		t.Errorf("recovery histogram: %d samples, sum %v; want 1, 1.3", h.GetSampleCount(), h.GetSampleSum())
	}
	want := map[string]fleet.Breaker{key: {State: fleet.BreakerClosed, Since: now, Failures: 0, Opens: 1,
		LastRecovery: 1300 * time.Millisecond, RecoveredAt: now}}
	if diff := cmp.Diff(want, bs.status()); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}

	// A timeout under a job's shorter deadline is not the plugin's.
	short := bs.admit(key, "p", false, false)
	if short.own(&plugin.Error{Code: plugin.CodeTimeout}) || !short.own(cause) {
		t.Error("a timeout under a job's deadline counts as the plugin's failure")
	}
	if !batch(false).own(&plugin.Error{Code: plugin.CodeTimeout}) {
		t.Error("a timeout under the worker's deadline does not count as the plugin's failure")
	}

	// No breakers: everything runs, nothing is booked.
	off := newBreakers(BreakerConfig{Threshold: -1}, nil, nil, "w1", bs.log)
	for range 10 {
		tk := off.admit(key, "p", false, true)
		if !tk.run {
			t.Fatal("a disabled breaker released a batch")
		}
		if out, _ := tk.failedWhole(cause); out {
			t.Fatal("a disabled breaker put the plugin out of service")
		}
		tk.failed(cause)
	}
}

func TestBreakerConfigValidates(t *testing.T) {
	for _, c := range []BreakerConfig{{Backoff: time.Microsecond}, {Backoff: time.Minute, MaxBackoff: time.Second}} {
		if _, err := c.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err = %v, want ErrInvalidConfig", c, err)
		}
	}
	c, err := BreakerConfig{Backoff: 2 * time.Minute}.withDefaults()
	if err != nil || c.Threshold != DefaultBreakerThreshold || c.MaxBackoff != 2*time.Minute {
		t.Errorf("defaults: %+v, %v", c, err)
	}
}

// value reads a metric.
func value(t *testing.T, m prometheus.Metric) *dto.Metric {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	return &out
}
