package console

import (
	"sync"
	"time"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
)

// sample is what the console keeps of the fleet at one moment, for the
// charts.
type sample struct {
	At time.Time
	// Plugins are the plugins' figures by name.
	Plugins map[string]pluginSample
	// Lags are the running pipelines' lags by name (owner/name).
	Lags map[string]float64
	// Healthy counts healthy workers, Workers all known ones.
	Healthy, Workers int
}

// pluginSample is one plugin at one moment.
type pluginSample struct {
	// Rate is records per second since the sample before; BatchSize the
	// size batches were cut at.
	Rate      float64
	BatchSize float64
	processed uint64
}

// Rates are taken over rateSamples samples, or more when they span less
// than rateSpan.
const (
	rateSamples = 4
	rateSpan    = 5 * time.Second
)

// history is a ring buffer of the last samples. Safe for concurrent use.
type history struct {
	mu   sync.Mutex
	buf  []sample
	next int // where the next sample goes
	n    int // samples held
	back int // how many samples back rates are taken from
}

// newHistory returns a history of size samples taken every interval.
func newHistory(size int, interval time.Duration) *history {
	back := rateSamples
	if interval > 0 {
		back = max(back, int((rateSpan+interval-1)/interval))
	}
	return &history{buf: make([]sample, size), back: min(back, size)}
}

// add appends a sample taken from st and pipes at time at: each plugin's
// rate is its records processed since the sample h.back back over
// the time between them (0 when the count went down: a worker's totals
// left the merge when it died).
func (h *history) add(at time.Time, st *fleet.Status, pipes []client.Pipeline) {
	s := sample{At: at, Plugins: map[string]pluginSample{}, Lags: map[string]float64{}}
	for _, w := range st.Workers {
		s.Workers++
		if w.Health == fleet.Healthy {
			s.Healthy++
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// The rate is over the last h.back samples (fewer at first): a
	// heartbeat's counts arrive in steps, as batches end, and a rate over
	// one short interval would saw up and down.
	var prev *sample
	if h.n > 0 {
		back := min(h.n, h.back)
		prev = &h.buf[(h.next-back+len(h.buf))%len(h.buf)]
	}
	for _, p := range st.Plugins {
		ps := pluginSample{BatchSize: float64(p.BatchSize), processed: p.Metrics.TotalProcessed}
		if prev != nil {
			if old, ok := prev.Plugins[p.Name]; ok && ps.processed >= old.processed {
				if dt := at.Sub(prev.At).Seconds(); dt > 0 {
					ps.Rate = float64(ps.processed-old.processed) / dt
				}
			}
		} else {
			ps.Rate = p.Metrics.Throughput
		}
		s.Plugins[p.Name] = ps
	}
	for _, p := range pipes {
		if p.Status != nil {
			s.Lags[pipelineKey(p)] = float64(p.Status.Lag)
		}
	}
	h.buf[h.next] = s
	h.next = (h.next + 1) % len(h.buf)
	h.n = min(h.n+1, len(h.buf))
}

// samples returns the samples held, oldest first.
func (h *history) samples() []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]sample, 0, h.n)
	for i := range h.n {
		out = append(out, h.buf[(h.next-h.n+i+len(h.buf))%len(h.buf)])
	}
	return out
}

// pipelineKey names a pipeline across owners.
func pipelineKey(p client.Pipeline) string {
	if p.Owner == "" {
		return p.Name
	}
	return p.Owner + "/" + p.Name
}
