package coordinator

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
)

// TestWorkerHealthByHeartbeatAge drives the fleet view with a fake clock
// (pure logic): a worker is healthy, then suspect, then dead, then
// forgotten, as its last heartbeat ages.
func TestWorkerHealthByHeartbeatAge(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	cfg, err := Config{Clock: clock}.withDefaults(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	v := newView(cfg, newMetrics(nil))
	h := time.Second
	v.observe(proto.Heartbeat{Worker: "a", Seq: 1, Interval: h, Pressure: 0.9,
		Plugins: []proto.PluginBeat{{Name: "upper", Native: true, Estimate: fleet.Estimate{PerRecord: time.Millisecond, Samples: 10}}}}, now)
	tests := []struct {
		age  time.Duration
		want fleet.Health
	}{
		{0, fleet.Healthy},
		{fleet.SuspectAfter * h, fleet.Healthy},
		{fleet.SuspectAfter*h + time.Millisecond, fleet.Suspect},
		{fleet.DeadAfter * h, fleet.Suspect},
		{fleet.DeadAfter*h + time.Millisecond, fleet.Dead},
	}
	start := now
	for _, tt := range tests {
		now = start.Add(tt.age)
		ws, _, _ := v.snapshot(now)
		if len(ws) != 1 || ws[0].Health != tt.want {
			t.Errorf("after %v: workers = %+v, want one %s", tt.age, ws, tt.want)
		}
	}
	if v.hasNative("upper") {
		t.Error("a dead worker's native plugin still counts")
	}
	now = start
	if !v.hasNative("upper") || v.hasNative("identity") {
		t.Errorf("hasNative: upper %v, identity %v", v.hasNative("upper"), v.hasNative("identity"))
	}
	// A dead worker is forgotten a minute later, at the next heartbeat.
	now = start.Add(fleet.DeadAfter*h + forgetAfter + time.Second)
	v.observe(proto.Heartbeat{Worker: "b", Seq: 1, Interval: h}, now)
	ws, _, _ := v.snapshot(now)
	if len(ws) != 1 || ws[0].ID != "b" {
		t.Errorf("after forgetting: workers = %+v, want only b", ws)
	}
	// Draining, then leaving.
	v.observe(proto.Heartbeat{Worker: "b", Seq: 2, Interval: h, Draining: true}, now)
	if ws, _, _ := v.snapshot(now); ws[0].Health != fleet.Draining {
		t.Errorf("draining worker: %s", ws[0].Health)
	}
	v.observe(proto.Heartbeat{Worker: "b", Seq: 3, Interval: h, Leaving: true}, now)
	if ws, _, _ := v.snapshot(now); len(ws) != 0 {
		t.Errorf("after leaving: %+v", ws)
	}
}

// TestPressureShrinksBatches: a worker's memory pressure reaches every
// plugin's controller.
func TestPressureShrinksBatches(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	cfg, err := Config{Clock: func() time.Time { return now }}.withDefaults(8 << 20)
	if err != nil {
		t.Fatal(err)
	}
	v := newView(cfg, newMetrics(nil))
	est := fleet.Estimate{PerRecord: 10 * time.Microsecond, Samples: 50}
	beat := func(p float64) {
		v.observe(proto.Heartbeat{Worker: "a", Interval: time.Second, Pressure: p,
			Plugins: []proto.PluginBeat{{Name: "upper", Native: true, Estimate: est}}}, now)
	}
	beat(0)
	for range 10 {
		now = now.Add(time.Second)
		beat(0)
		v.batchSize("upper", 100)
	}
	free := v.batchSize("upper", 100)
	beat(0.95)
	pressed := v.batchSize("upper", 100)
	if !(pressed < free) {
		t.Errorf("size under pressure 0.95 = %d, not below %d without", pressed, free)
	}
	_, plugins, _ := v.snapshot(now)
	if len(plugins) != 1 || plugins[0].Sizer.Pressure != 0.95 {
		t.Errorf("plugins = %+v", plugins)
	}
}

// FuzzHeartbeat feeds arbitrary bytes to the heartbeat handler: it never
// panics, and a heartbeat it accepts shows up in the view.
func FuzzHeartbeat(f *testing.F) {
	f.Add([]byte(`{"worker":"w1","seq":1,"interval_ns":1000000000,"plugins":[{"name":"upper","native":true,"estimate":{"fixed_ns":1000,"per_record_ns":50,"samples":3}}],"pressure":0.5}`))
	f.Add([]byte(`{"worker":"w1","leaving":true}`))
	f.Add([]byte(`{"worker":"bad name"}`))
	f.Add([]byte(`{"worker":"w","plugins":[{"name":"x","estimate":{"fixed_ns":-5,"per_record_ns":-1,"samples":-3}}],"pressure":-2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		now := time.Unix(1_000_000, 0)
		cfg, err := Config{Clock: func() time.Time { return now }}.withDefaults(8 << 20)
		if err != nil {
			t.Fatal(err)
		}
		c := &Coordinator{cfg: cfg, log: cfg.Logger, metrics: newMetrics(nil)}
		c.view = newView(cfg, c.metrics)
		c.onHeartbeat(natsMsg(data))
		ws, plugins, _ := c.view.snapshot(now)
		for _, p := range plugins {
			if n := c.view.batchSize(p.Name, 100); n < 1 || n > cfg.Sizer.Max {
				t.Fatalf("batch size %d out of range", n)
			}
		}
		_ = ws
	})
}

func natsMsg(data []byte) *nats.Msg {
	return &nats.Msg{Subject: proto.HeartbeatSubject("w1"), Data: data}
}

// A heartbeat speaks for the worker of its subject: one whose body names
// another worker, lists too many plugins or malformed names is ignored.
func TestHeartbeatIdentity(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	cfg, err := Config{Clock: func() time.Time { return now }}.withDefaults(8 << 20)
	if err != nil {
		t.Fatal(err)
	}
	c := &Coordinator{cfg: cfg, log: cfg.Logger, metrics: newMetrics(nil)}
	c.view = newView(cfg, c.metrics)
	many := make([]proto.PluginBeat, maxBeatPlugins+1)
	for i := range many {
		many[i].Name = fmt.Sprintf("p%d", i)
	}
	for _, hb := range []proto.Heartbeat{
		{Worker: "w2", Seq: 1},
		{Worker: "w1", Seq: 1, Plugins: many},
		{Worker: "w1", Seq: 1, Plugins: []proto.PluginBeat{{Name: "bad name"}}},
	} {
		b, _ := json.Marshal(hb)
		c.onHeartbeat(&nats.Msg{Subject: proto.HeartbeatSubject("w1"), Data: b})
	}
	if ws, ps, _ := c.view.snapshot(now); len(ws) != 0 || len(ps) != 0 {
		t.Errorf("forged heartbeats were believed: workers %v, plugins %v", ws, ps)
	}
	b, _ := json.Marshal(proto.Heartbeat{Worker: "w1", Seq: 1, Interval: time.Second})
	c.onHeartbeat(&nats.Msg{Subject: proto.HeartbeatSubject("w1"), Data: b})
	if ws, _, _ := c.view.snapshot(now); len(ws) != 1 || ws[0].ID != "w1" {
		t.Errorf("the worker's own heartbeat: workers %v", ws)
	}
}
