package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
)

// ProcessBatch runs the plugin name over recs on the fleet and returns
// exactly one Result per record, in order — the seeds' process_batch, across
// machines. Duration is the wall time of the whole job. Errors are Submit's
// and the job's.
func (c *Client) ProcessBatch(ctx context.Context, name string, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	start := time.Now()
	j, err := c.Submit(ctx, name, Records(recs), WithConfig(cfg))
	if err != nil {
		return nil, err
	}
	out := make([]plugin.Result, 0, len(recs))
	for o, err := range j.Results() {
		if err != nil {
			return nil, err
		}
		out = append(out, o.Result)
	}
	return &plugin.BatchResult{Results: out, Duration: time.Since(start)}, nil
}

// ProcessRecord runs the plugin name over one record on the fleet. A
// per-record failure is returned both as the error and in the Result's Err,
// as the in-process Manager's ProcessRecord does.
func (c *Client) ProcessRecord(ctx context.Context, name string, cfg plugin.Config, r plugin.Record) (plugin.Result, error) {
	res, err := c.ProcessBatch(ctx, name, cfg, []plugin.Record{r})
	if err != nil {
		return plugin.Result{}, err
	}
	return res.Results[0], res.Results[0].Err
}

// SystemStatus returns the fleet's status as a coordinator sees it: the
// workers and their health, the plugins with merged metrics and batch sizes,
// and the queues. ErrNoCoordinator when none answers.
func (c *Client) SystemStatus(ctx context.Context) (*fleet.Status, error) {
	return request[fleet.Status](ctx, c, proto.SubjectStatus, nil)
}

// Report returns the fleet's performance report.
func (c *Client) Report(ctx context.Context) (*fleet.Report, error) {
	return request[fleet.Report](ctx, c, proto.SubjectReport, nil)
}

// ExportPerformanceReport writes the fleet's performance report to w as
// indented JSON.
func (c *Client) ExportPerformanceReport(ctx context.Context, w io.Writer) error {
	r, err := c.Report(ctx)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Metrics returns the plugin's metrics merged over the fleet's live
// workers, and false when no live worker reports the plugin.
func (c *Client) Metrics(ctx context.Context, name string) (fleet.PluginMetrics, bool, error) {
	st, err := c.SystemStatus(ctx)
	if err != nil {
		return fleet.PluginMetrics{}, false, err
	}
	for _, p := range st.Plugins {
		if p.Name == name && p.Workers > 0 {
			m := p.Metrics
			m.Name = name
			return m, true, nil
		}
	}
	return fleet.PluginMetrics{}, false, nil
}

// HealthCheck checks the fleet: it is healthy when at least one worker is
// healthy and no plugin is degraded. The report lists every plugin's merged
// health; the error matches ErrNoWorkers without a healthy worker, or
// fleet.ErrUnhealthy when a plugin is degraded or failed.
func (c *Client) HealthCheck(ctx context.Context) (fleet.HealthReport, error) {
	st, err := c.SystemStatus(ctx)
	if err != nil {
		return fleet.HealthReport{}, err
	}
	rep := fleet.HealthReport{CheckedAt: st.At}
	for _, p := range st.Plugins {
		if p.Workers == 0 {
			continue
		}
		m := p.Metrics
		rep.Plugins = append(rep.Plugins, fleet.PluginHealth{
			Name: p.Name, Health: m.Health, State: m.State, Reason: m.HealthReason,
			RecentProcessed: m.RecentProcessed, RecentFailed: m.RecentFailed,
		})
		rep.Health = rep.Health.Worst(m.Health)
	}
	healthy := 0
	for _, w := range st.Workers {
		if w.Health == fleet.Healthy {
			healthy++
		}
	}
	switch {
	case healthy == 0:
		rep.Health = fleet.Failed
		return rep, &Error{Code: plugin.CodeNoWorkers, Message: fmt.Sprintf("no healthy worker among %d", len(st.Workers))}
	case rep.Health != fleet.Healthy:
		return rep, fmt.Errorf("%w: a plugin is %s", fleet.ErrUnhealthy, rep.Health)
	}
	return rep, nil
}
