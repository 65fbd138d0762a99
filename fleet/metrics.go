package fleet

import (
	"time"

	"github.com/dataflare/dataflare/hist"
	"github.com/dataflare/dataflare/plugin"
)

// Latency summarises a latency histogram. Percentiles are within 1/32 of
// the true value (see package hist); Mean and Max are exact.
type Latency struct {
	Mean time.Duration `json:"mean_ns"` // exact
	P50  time.Duration `json:"p50_ns"`  // median
	P90  time.Duration `json:"p90_ns"`  // 90th percentile
	P99  time.Duration `json:"p99_ns"`  // 99th percentile
	Max  time.Duration `json:"max_ns"`  // exact
}

// Summarize returns h's Latency.
func Summarize(h *hist.Histogram) Latency {
	return Latency{Mean: h.Mean(), P50: h.Quantile(0.5), P90: h.Quantile(0.9), P99: h.Quantile(0.99), Max: h.Max()}
}

// PluginMetrics is what a Manager measured of one plugin since it was
// registered, and over the recent Window; in a fleet's Status, the merge
// of every live worker's.
//
// Counting rules: every record handed to the plugin counts in
// TotalProcessed, except those of a call cut short because the caller
// cancelled its context (Canceled). A record is Failed when it got a
// per-record error or its whole call failed (a panic, a deadline, a wrong
// number of results); Succeeded = TotalProcessed − Failed, and Dropped (the
// plugin filtered the record out) is part of Succeeded. Batches counts plugin
// calls (each chunk of a split batch is one), BatchErrors the calls that
// failed as a whole, Panics the panics (of whole calls and of single records
// in a record-at-a-time Plugin).
type PluginMetrics struct {
	// Name is the name the plugin is registered under.
	Name string `json:"name"`
	// Info is the plugin's own description (none for a Total).
	Info plugin.Info `json:"info,omitzero"`
	// State is the plugin's state as the Manager sees it: its own State,
	// plugin.Degraded while the Manager judges it degraded,
	// plugin.Running while a call is in flight (none for a Total).
	State plugin.State `json:"state,omitempty"`
	// Health is the Manager's verdict, and HealthReason why when it is
	// not Healthy.
	Health       Health `json:"health"`
	HealthReason string `json:"health_reason,omitempty"`

	TotalProcessed uint64 `json:"total_processed"` // records handed to the plugin
	Succeeded      uint64 `json:"succeeded"`       // records without an error
	Failed         uint64 `json:"failed"`          // records with an error
	Dropped        uint64 `json:"dropped"`         // records filtered out (part of Succeeded)
	Canceled       uint64 `json:"canceled"`        // records of calls the caller cancelled
	Batches        uint64 `json:"batches"`         // plugin calls
	BatchErrors    uint64 `json:"batch_errors"`    // plugin calls that failed as a whole
	Panics         uint64 `json:"panics"`          // panics, of calls and of records
	// ErrorRate is Failed / TotalProcessed (0 when nothing was processed).
	ErrorRate float64 `json:"error_rate"`

	// Window is the configured span of the recent metrics; WindowSpan the
	// time they actually cover (shorter just after registration).
	Window     time.Duration `json:"window_ns"`
	WindowSpan time.Duration `json:"window_span_ns"`
	// RecentProcessed and RecentFailed count records within WindowSpan.
	RecentProcessed uint64 `json:"recent_processed"`
	RecentFailed    uint64 `json:"recent_failed"`
	// Throughput is RecentProcessed / WindowSpan, in records per second.
	Throughput float64 `json:"throughput"`
	// RecentErrorRate is RecentFailed / RecentProcessed.
	RecentErrorRate float64 `json:"recent_error_rate"`

	// BatchSize is the size ProcessBatch currently cuts batches into.
	BatchSize int `json:"batch_size,omitempty"`
	// InFlight is the number of plugin calls running now.
	InFlight int `json:"in_flight"`

	// BatchLatency summarises the latency of successful plugin calls,
	// RecordLatency the per-record latency (a call's latency divided by
	// its records, counted once per record).
	BatchLatency  Latency `json:"batch_latency"`
	RecordLatency Latency `json:"record_latency"`
	// BatchHistogram and RecordHistogram are the histograms behind them,
	// for exact merging.
	BatchHistogram  hist.Histogram `json:"batch_histogram"`
	RecordHistogram hist.Histogram `json:"record_histogram"`
	// LastBatch is when the last plugin call ended; zero if none did.
	LastBatch time.Time `json:"last_batch,omitzero"`
}

// Merge adds o to pm, as for the same plugin on another worker: counts and
// histograms add up exactly, throughputs and in-flight calls add (the
// workers run side by side), the window spans take the longer, State and
// Health take the worse, and the rates and latencies are recomputed. Name,
// Info and BatchSize are pm's, or o's when pm has none.
func (pm *PluginMetrics) Merge(o *PluginMetrics) {
	if pm.Name == "" {
		pm.Name = o.Name
	}
	if pm.Info == (plugin.Info{}) {
		pm.Info = o.Info
	}
	if pm.BatchSize == 0 {
		pm.BatchSize = o.BatchSize
	}
	if stateRank(o.State) > stateRank(pm.State) {
		pm.State = o.State
	}
	if o.Health > pm.Health {
		pm.Health, pm.HealthReason = o.Health, o.HealthReason
	}
	pm.TotalProcessed += o.TotalProcessed
	pm.Succeeded += o.Succeeded
	pm.Failed += o.Failed
	pm.Dropped += o.Dropped
	pm.Canceled += o.Canceled
	pm.Batches += o.Batches
	pm.BatchErrors += o.BatchErrors
	pm.Panics += o.Panics
	pm.Window = max(pm.Window, o.Window)
	pm.WindowSpan = max(pm.WindowSpan, o.WindowSpan)
	pm.RecentProcessed += o.RecentProcessed
	pm.RecentFailed += o.RecentFailed
	pm.Throughput += o.Throughput
	pm.InFlight += o.InFlight
	pm.BatchHistogram.Merge(&o.BatchHistogram)
	pm.RecordHistogram.Merge(&o.RecordHistogram)
	if o.LastBatch.After(pm.LastBatch) {
		pm.LastBatch = o.LastBatch
	}
	pm.Derive()
}

// Total merges ms into one entry named "total", as a performance report
// shows it: the counts, histograms, rates, latencies and worst health of
// them all. An aggregate has no Info, State or BatchSize of its own: they
// are left zero, and out of its JSON.
func Total(ms []PluginMetrics) PluginMetrics {
	t := PluginMetrics{Name: "total"}
	for i := range ms {
		t.Merge(&ms[i])
	}
	t.Info, t.State, t.BatchSize = plugin.Info{}, 0, 0
	if len(ms) == 0 {
		t.Derive()
	}
	return t
}

// Derive recomputes the rates (ErrorRate, RecentErrorRate) and the latency
// summaries from the counts and histograms, for whoever fills a
// PluginMetrics from its own counters (a Manager does).
func (pm *PluginMetrics) Derive() {
	pm.ErrorRate = ratio(pm.Failed, pm.TotalProcessed)
	pm.RecentErrorRate = ratio(pm.RecentFailed, pm.RecentProcessed)
	pm.BatchLatency = Summarize(&pm.BatchHistogram)
	pm.RecordLatency = Summarize(&pm.RecordHistogram)
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// stateRank orders states from best to worst, for merging.
func stateRank(s plugin.State) int {
	switch s {
	case plugin.Ready:
		return 0
	case plugin.Running:
		return 1
	case plugin.Uninitialized:
		return 2
	case plugin.Degraded:
		return 3
	case plugin.Stopped:
		return 4
	case plugin.Failed:
		return 5
	}
	return 6
}

// PluginHealth is one plugin's entry in a HealthReport.
type PluginHealth struct {
	Name   string       `json:"name"`   // registered name
	Health Health       `json:"health"` // the verdict
	State  plugin.State `json:"state"`  // as in PluginMetrics
	// Reason says why Health is not Healthy.
	Reason string `json:"reason,omitempty"`
	// Since is when Health last changed (registration for a plugin that
	// was always healthy).
	Since time.Time `json:"since"`
	// RecentProcessed, RecentFailed and RecentPanics count what the
	// health decision looked at: the last Window, since Since.
	RecentProcessed uint64 `json:"recent_processed"`
	RecentFailed    uint64 `json:"recent_failed"`
	RecentPanics    uint64 `json:"recent_panics"`
}

// HealthReport is the outcome of a HealthCheck.
type HealthReport struct {
	// Health is the worst of the plugins' (Healthy with no plugin).
	Health    Health    `json:"health"`
	CheckedAt time.Time `json:"checked_at"` // on the Manager's clock
	// Plugins is sorted by name.
	Plugins []PluginHealth `json:"plugins"`
}

// RuntimeStats are the Go runtime's figures for the process (from
// runtime/metrics).
type RuntimeStats struct {
	GoVersion  string `json:"go_version"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Goroutines int    `json:"goroutines"`
	// HeapBytes is the memory held by live and not yet swept heap objects.
	HeapBytes uint64 `json:"heap_bytes"`
	// HeapGoalBytes is the heap size at which the next GC starts.
	HeapGoalBytes uint64 `json:"heap_goal_bytes"`
	// TotalBytes is all memory the Go runtime has mapped.
	TotalBytes uint64 `json:"total_bytes"`
	// GCCycles counts completed GC cycles.
	GCCycles uint64 `json:"gc_cycles"`
}
