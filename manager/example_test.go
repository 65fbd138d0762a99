package manager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/manager"
	"github.com/dataflare/dataflare/plugin"
)

// MyPlugin is the usage guide's custom plugin: it upper-cases values and
// refuses empty ones.
type MyPlugin struct{}

func (MyPlugin) Info() plugin.Info {
	return plugin.Info{
		Name:        "my_plugin",
		Version:     "1.0.0",
		Type:        plugin.Transformer,
		Description: "My custom plugin",
		Author:      "Your Name",
		APIVersion:  plugin.APIVersion,
	}
}

func (MyPlugin) Process(_ context.Context, _ plugin.Config, r plugin.Record) (plugin.Result, error) {
	if len(r.Value) == 0 {
		return plugin.Result{}, plugin.Errorf(plugin.CodeInvalidInput, "my_plugin: empty value")
	}
	return plugin.Value(bytes.ToUpper(r.Value)), nil
}

func ExampleManager() {
	ctx := context.Background()

	// 1. Create the plugin manager.
	m, err := manager.New(manager.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer m.Close()

	// 2. Register a plugin and process one record.
	if err := m.Register("my_plugin", MyPlugin{}); err != nil {
		panic(err)
	}
	res, err := m.ProcessRecord(ctx, "my_plugin", nil, plugin.Record{Value: []byte("hello")})
	fmt.Println(string(res.Value), err)

	// 3. Process a batch: one result per record, in order.
	records := []plugin.Record{{Value: []byte("a")}, {Value: nil}, {Value: []byte("c")}}
	batch, err := m.ProcessBatch(ctx, "my_plugin", nil, records)
	if err != nil {
		panic(err)
	}
	fmt.Printf("processed %d records\n", batch.Processed())
	fmt.Printf("succeeded %d, failed %d\n", batch.Succeeded(), batch.Failed())
	for _, e := range batch.Errors() {
		fmt.Println(e, errors.Is(e, plugin.ErrInvalidInput))
	}

	// 4. Performance metrics.
	metrics, _ := m.Metrics("my_plugin")
	fmt.Println("total processed:", metrics.TotalProcessed)
	fmt.Printf("error rate: %.2f%%\n", metrics.ErrorRate*100)
	fmt.Println("latency measured:", metrics.BatchLatency.Mean > 0, metrics.RecordLatency.P99 > 0)
	// Output:
	// HELLO <nil>
	// processed 3 records
	// succeeded 2, failed 1
	// record 1: my_plugin: empty value true
	// total processed: 4
	// error rate: 25.00%
	// latency measured: true true
}

// The usage guide's advanced configuration.
func ExampleConfig() {
	cfg := manager.DefaultConfig()
	cfg.Batch = manager.BatchConfig{
		DefaultSize:   100,
		MaxSize:       1000,
		TargetLatency: 50 * time.Millisecond,
		Parallelism:   4,
	}
	cfg.AutoOptimize = true
	cfg.MonitoringInterval = 30 * time.Second
	cfg.MaxInstances = 10
	cfg.HealthCheckInterval = 60 * time.Second

	m, err := manager.New(cfg)
	if err != nil {
		panic(err)
	}
	defer m.Close()
	if err := m.Register("my_plugin", MyPlugin{}); err != nil {
		panic(err)
	}
	fmt.Println("batch size:", m.BatchSize("my_plugin"))
	// Output: batch size: 100
}

func ExampleManager_HealthCheck() {
	ctx := context.Background()
	m, err := manager.New(manager.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer m.Close()
	if err := m.Register("my_plugin", MyPlugin{}); err != nil {
		panic(err)
	}

	// Every record fails: past the error-rate threshold the plugin is
	// degraded (it still gets work).
	_, _ = m.ProcessBatch(ctx, "my_plugin", nil, make([]plugin.Record, 50))
	report, err := m.HealthCheck(ctx)
	fmt.Println(report.Health, errors.Is(err, fleet.ErrUnhealthy))
	fmt.Println(report.Plugins[0].Reason)

	// Behaving again brings it back.
	_, _ = m.ProcessBatch(ctx, "my_plugin", nil, []plugin.Record{{Value: []byte("ok")}, {Value: []byte("ok")}, {Value: []byte("ok")}})
	batch := make([]plugin.Record, 20)
	for i := range batch {
		batch[i].Value = []byte("fine")
	}
	_, _ = m.ProcessBatch(ctx, "my_plugin", nil, batch)
	report, err = m.HealthCheck(ctx)
	fmt.Println(report.Health, err)

	status := m.SystemStatus()
	fmt.Println(status.Health, status.Plugins[0].Name, status.Plugins[0].State)
	// Output:
	// degraded true
	// error rate 100% over 50 records within 1m0s
	// healthy <nil>
	// healthy my_plugin ready
}

func ExampleManager_ExportPerformanceReport() {
	m, err := manager.New(manager.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer m.Close()
	if err := m.Register("my_plugin", MyPlugin{}); err != nil {
		panic(err)
	}
	_, _ = m.ProcessBatch(context.Background(), "my_plugin", nil, []plugin.Record{{Value: []byte("x")}, {Value: []byte("y")}})

	var out bytes.Buffer // a file in the usage guide: performance_report.json
	if err := m.ExportPerformanceReport(&out); err != nil {
		panic(err)
	}
	var report manager.PerformanceReport
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		panic(err)
	}
	p := report.Plugins[0]
	fmt.Println(p.Name, p.Info.Version, p.TotalProcessed, p.Succeeded, p.BatchHistogram.Count())
	fmt.Println(report.Total.TotalProcessed, report.Settings.Batch.DefaultSize, report.System.Health)
	// Output:
	// my_plugin 1.0.0 2 2 1
	// 2 100 healthy
}
