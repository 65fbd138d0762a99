package console

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/wasmstore"
)

// pageNames are the templates, one per page (assets/NAME.html).
var pageNames = []string{"fleet", "plugins", "pipelines", "jobs", "job", "dead", "replay", "notfound"}

// alert is a line at the top of a page that says what is wrong: Level is
// "bad" (something is down) or "warn".
type alert struct {
	Level, Text string
}

// healthClass maps a health to the CSS class of its badge.
func healthClass(h fleet.Health) string {
	switch h {
	case fleet.Healthy:
		return "ok"
	case fleet.Degraded, fleet.Draining, fleet.Suspect:
		return "warn"
	default:
		return "bad"
	}
}

// fleetView is the fleet page.
type fleetView struct {
	Status                 *fleet.Status
	Workers                []workerRow
	Healthy                int
	InFlight, Slots        int
	Pending                uint64
	Rate                   float64
	Alerts                 []alert
	Plugins                []pluginRow
	Throughput, BatchSizes *chart
}

// workerRow is one worker on the fleet page.
type workerRow struct {
	fleet.Worker
	// Slots is InFlight over Parallel, 0..1.
	Slots float64
	// Note says what the health means for this worker.
	Note string
}

// pluginRow is one plugin as the fleet runs it.
type pluginRow struct {
	fleet.Plugin
	// Rate is the last sampled throughput, records/s.
	Rate float64
	// Holders are the workers that report the plugin.
	Holders []string
	// Breaker says how its circuit breakers stand, "" when none opened.
	Breaker string
}

// newFleetView builds the fleet page from st and the samples.
func newFleetView(now time.Time, window, gap time.Duration, st *fleet.Status, samples []sample) *fleetView {
	v := &fleetView{Status: st, Pending: st.PendingBatches}
	for _, w := range st.Workers {
		row := workerRow{Worker: w}
		if w.Parallel > 0 {
			row.Slots = float64(w.InFlight) / float64(w.Parallel)
		}
		switch w.Health {
		case fleet.Healthy:
			v.Healthy++
			v.InFlight += w.InFlight
			v.Slots += w.Parallel
		case fleet.Draining:
			row.Note = "stopping: finishes the batches it runs, takes no more"
			v.Alerts = append(v.Alerts, alert{"warn", fmt.Sprintf("Worker %s is draining: it finishes its %d batches and leaves.", w.ID, w.InFlight)})
		case fleet.Suspect:
			row.Note = fmt.Sprintf("late: no heartbeat for %s", shortDuration(w.Age.Truncate(100*time.Millisecond)))
			v.Alerts = append(v.Alerts, alert{"warn", fmt.Sprintf("Worker %s is late: no heartbeat for %s. It is given no new work until it answers.", w.ID, shortDuration(w.Age.Truncate(100*time.Millisecond)))})
		case fleet.Dead:
			row.Note = fmt.Sprintf("dead: no heartbeat for %s", shortDuration(w.Age.Truncate(time.Second)))
			running := "It was running no batch."
			if w.InFlight > 0 {
				running = fmt.Sprintf("The %d batches it was running go back to their queues when their ack wait runs out, for other workers.", w.InFlight)
			}
			v.Alerts = append(v.Alerts, alert{"bad", fmt.Sprintf("Worker %s is dead: its last heartbeat was %s (%s). %s",
				w.ID, ago(now, now.Add(-w.Age)), clock(w.LastHeartbeat), running)})
		}
		for _, b := range w.Breakers {
			if b.State != fleet.BreakerClosed {
				v.Alerts = append(v.Alerts, alert{"warn", fmt.Sprintf("Plugin %s is out of service on worker %s: its circuit breaker is %s since %s (%d failed batches in a row).",
					b.Plugin, w.ID, b.State, ago(now, b.Since), b.Failures)})
			}
		}
		v.Workers = append(v.Workers, row)
	}
	if v.Healthy == 0 {
		v.Alerts = slices.Insert(v.Alerts, 0, alert{"bad", "No healthy worker: nothing runs. Jobs wait in their queues until a worker joins."})
	}
	for _, q := range st.Queues {
		if q.Pending > 0 && v.Healthy > 0 && v.InFlight >= v.Slots {
			v.Alerts = append(v.Alerts, alert{"warn", fmt.Sprintf("Queue %s: %s batches wait for a slot; all %d slots of the %d healthy workers are busy (the jobs page says whose).",
				queueName(q), count(q.Pending), v.Slots, v.Healthy)})
		}
	}
	rates := latestRates(samples)
	for _, p := range st.Plugins {
		row := pluginRow{Plugin: p, Rate: rates[p.Name], Breaker: breakerText(p)}
		for _, w := range st.Workers {
			if w.Health != fleet.Dead && slices.Contains(w.Plugins, p.Name) {
				row.Holders = append(row.Holders, w.ID)
			}
		}
		if p.Metrics.Health != fleet.Healthy && p.Workers > 0 {
			reason := p.Metrics.HealthReason
			if reason == "" {
				reason = "see its metrics"
			}
			v.Alerts = append(v.Alerts, alert{"warn", fmt.Sprintf("Plugin %s is %s: %s.", p.Name, p.Metrics.Health, strings.TrimSuffix(reason, "."))})
		}
		v.Rate += row.Rate
		v.Plugins = append(v.Plugins, row)
	}
	window = span(now, samples, window)
	v.Throughput = lineChart("Throughput, records/s", now, window, gap, pluginSeries(samples, func(p pluginSample) float64 { return p.Rate }), rate)
	v.BatchSizes = lineChart("Batch size, records", now, window, gap, pluginSeries(samples, func(p pluginSample) float64 { return p.BatchSize }), rate)
	return v
}

// queueName names a queue by owner and priority.
func queueName(q fleet.Queue) string {
	owner := q.Owner
	if owner == "" {
		owner = "shared"
	}
	return owner + "/" + q.Priority.String()
}

// breakerText sums up a plugin's circuit breakers.
func breakerText(p fleet.Plugin) string {
	switch {
	case p.Breaker == nil:
		return ""
	case p.OutOfService > 0:
		return fmt.Sprintf("out of service on %d of %d workers", p.OutOfService, p.Workers)
	default:
		return fmt.Sprintf("closed (opened %d times)", p.Breaker.Opens)
	}
}

// latestRates returns each plugin's rate in the last sample.
func latestRates(samples []sample) map[string]float64 {
	out := map[string]float64{}
	if len(samples) == 0 {
		return out
	}
	for name, p := range samples[len(samples)-1].Plugins {
		out[name] = p.Rate
	}
	return out
}

// pluginSeries returns one series per plugin of value over the samples,
// from its first sample where it had processed records (a plugin that
// never ran has no line).
func pluginSeries(samples []sample, value func(pluginSample) float64) map[string][]point {
	out := map[string][]point{}
	for _, s := range samples {
		for name, p := range s.Plugins {
			if p.processed > 0 || out[name] != nil {
				out[name] = append(out[name], point{s.At, value(p)})
			}
		}
	}
	return out
}

// pluginsView is the plugins page.
type pluginsView struct {
	// Modules are the stored modules, grouped by name.
	Modules []moduleGroup
	// Running are the plugins the fleet runs now.
	Running []pluginRow
}

// moduleGroup is one stored plugin's versions, newest first.
type moduleGroup struct {
	Name     string
	Versions []moduleRow
}

// moduleRow is one stored version.
type moduleRow struct {
	wasmstore.Manifest
	// Loaded says that a live worker has this version's module loaded,
	// Holders are the live workers that hold the plugin (any version).
	Loaded  bool
	Holders []string
}

// newPluginsView builds the plugins page.
func newPluginsView(st *fleet.Status, mods []wasmstore.Manifest, samples []sample) *pluginsView {
	v := &pluginsView{}
	byName := map[string]fleet.Plugin{}
	if st != nil {
		for _, p := range st.Plugins {
			byName[p.Name] = p
		}
	}
	holders := func(name string) []string {
		var out []string
		if st != nil {
			for _, w := range st.Workers {
				if w.Health != fleet.Dead && slices.Contains(w.Plugins, name) {
					out = append(out, w.ID)
				}
			}
		}
		return out
	}
	for _, m := range mods {
		if len(v.Modules) == 0 || v.Modules[len(v.Modules)-1].Name != m.Name {
			v.Modules = append(v.Modules, moduleGroup{Name: m.Name})
		}
		g := &v.Modules[len(v.Modules)-1]
		g.Versions = append(g.Versions, moduleRow{Manifest: m, Loaded: slices.Contains(byName[m.Name].Digests, m.Digest), Holders: holders(m.Name)})
	}
	if st != nil {
		rates := latestRates(samples)
		for _, p := range st.Plugins {
			v.Running = append(v.Running, pluginRow{Plugin: p, Rate: rates[p.Name], Breaker: breakerText(p), Holders: holders(p.Name)})
		}
	}
	return v
}

// pipelinesView is the pipelines page.
type pipelinesView struct {
	Pipelines []pipelineRow
	Lag       *chart
}

// pipelineRow is one pipeline.
type pipelineRow struct {
	client.Pipeline
	// Key names it on the lag chart (owner/name).
	Key string
	// State is what runs it now, Class its badge's colour.
	State, Class string
}

// newPipelinesView builds the pipelines page.
func newPipelinesView(now time.Time, window, gap time.Duration, pipes []client.Pipeline, samples []sample) *pipelinesView {
	v := &pipelinesView{}
	for _, p := range pipes {
		row := pipelineRow{Pipeline: p, Key: pipelineKey(p)}
		switch {
		case p.Paused:
			row.State, row.Class = "paused", "warn"
		case p.Status == nil:
			row.State, row.Class = "not running: no coordinator has taken it", "bad"
		case p.Status.State == "running":
			row.State, row.Class = "running", "ok"
		default:
			row.State, row.Class = p.Status.State, "bad"
		}
		v.Pipelines = append(v.Pipelines, row)
	}
	lags := map[string][]point{}
	for _, s := range samples {
		for name, lag := range s.Lags {
			lags[name] = append(lags[name], point{s.At, lag})
		}
	}
	window = span(now, samples, window)
	v.Lag = lineChart("Lag, source messages not yet in the sink", now, window, gap, lags, rate)
	return v
}
