package fleet_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/plugin"
)

func TestHealthText(t *testing.T) {
	for h := fleet.Healthy; h <= fleet.Dead; h++ {
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var back fleet.Health
		if err := json.Unmarshal(b, &back); err != nil || back != h {
			t.Errorf("%v as %s reads back as %v, %v", h, b, back, err)
		}
	}
	var h fleet.Health
	if err := h.UnmarshalText([]byte("splendid")); !errors.Is(err, plugin.ErrInvalidInput) {
		t.Errorf("unknown health: err = %v, want ErrInvalidInput", err)
	}
	if got := fleet.Degraded.Worst(fleet.Healthy); got != fleet.Degraded {
		t.Errorf("Degraded.Worst(Healthy) = %v", got)
	}
	if got := fleet.Failed.Worst(fleet.Degraded); got != fleet.Failed {
		t.Errorf("Failed.Worst(Degraded) = %v", got)
	}
}

func metrics(name string, processed, failed uint64, health fleet.Health, lat time.Duration) fleet.PluginMetrics {
	pm := fleet.PluginMetrics{
		Name: name, Info: plugin.Info{Name: name, Version: "1.0.0"}, State: plugin.Ready, Health: health,
		TotalProcessed: processed, Failed: failed, Succeeded: processed - failed, Batches: processed / 10, BatchSize: 10,
	}
	pm.BatchHistogram.RecordN(lat, pm.Batches)
	pm.Derive()
	return pm
}

// TestTotal: the total of a report adds up its plugins and carries no
// info, state or batch size of its own (an aggregate has none).
func TestTotal(t *testing.T) {
	ms := []fleet.PluginMetrics{
		metrics("a", 100, 10, fleet.Healthy, time.Millisecond),
		metrics("b", 300, 0, fleet.Degraded, 3*time.Millisecond),
	}
	tot := fleet.Total(ms)
	if tot.Name != "total" || tot.TotalProcessed != 400 || tot.Failed != 10 || tot.Batches != 40 || tot.Health != fleet.Degraded {
		t.Errorf("Total = %+v", tot)
	}
	if tot.ErrorRate != 10.0/400 {
		t.Errorf("ErrorRate = %v, want %v", tot.ErrorRate, 10.0/400)
	}
	if tot.BatchLatency.Max < 3*time.Millisecond*31/32 {
		t.Errorf("BatchLatency.Max = %v, want about 3ms", tot.BatchLatency.Max)
	}
	b, err := json.Marshal(tot)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"info"`, `"state"`, `"batch_size"`} {
		if strings.Contains(string(b), k) {
			t.Errorf("the total's JSON has %s: %s", k, b)
		}
	}
	// A plugin's own entry keeps them.
	b, _ = json.Marshal(ms[0])
	for _, k := range []string{`"info"`, `"state":"ready"`, `"batch_size":10`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("a plugin's JSON lacks %s: %s", k, b)
		}
	}
	if empty := fleet.Total(nil); empty.Name != "total" || empty.TotalProcessed != 0 {
		t.Errorf("Total(nil) = %+v", empty)
	}
}

// TestMerge: merging the same plugin from two workers adds counts and
// histograms exactly and keeps the worse health.
func TestMerge(t *testing.T) {
	a := metrics("p", 100, 0, fleet.Healthy, time.Millisecond)
	b := metrics("p", 100, 50, fleet.Degraded, time.Millisecond)
	b.HealthReason = "error rate 50%"
	a.Merge(&b)
	if a.TotalProcessed != 200 || a.Failed != 50 || a.ErrorRate != 0.25 || a.Health != fleet.Degraded || a.HealthReason != "error rate 50%" {
		t.Errorf("merged = %+v", a)
	}
	if a.BatchHistogram.Count() != 20 {
		t.Errorf("merged histogram holds %d batches, want 20", a.BatchHistogram.Count())
	}
}
