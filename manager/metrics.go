package manager

import (
	"time"

	"github.com/dataflare/dataflare/fleet"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/pool"
)

// PluginStatus is one plugin's line in a SystemStatus.
type PluginStatus struct {
	Name           string       `json:"name"`            // registered name
	Version        string       `json:"version"`         // Info.Version
	State          plugin.State `json:"state"`           // as in fleet.PluginMetrics
	Health         fleet.Health `json:"health"`          // as last evaluated
	BatchSize      int          `json:"batch_size"`      // current batch size
	InFlight       int          `json:"in_flight"`       // plugin calls running now
	TotalProcessed uint64       `json:"total_processed"` // as in fleet.PluginMetrics
}

// SystemStatus is the state of a Manager at a glance.
type SystemStatus struct {
	StartedAt time.Time     `json:"started_at"` // when New ran
	Uptime    time.Duration `json:"uptime_ns"`  // since StartedAt
	// Health is the worst of the plugins', as last evaluated.
	Health       fleet.Health `json:"health"`
	AutoOptimize bool         `json:"auto_optimize"` // Config.AutoOptimize
	// Plugins is sorted by name.
	Plugins []PluginStatus     `json:"plugins"`
	Pool    pool.Stats         `json:"pool"`    // the Manager's memory pool
	Runtime fleet.RuntimeStats `json:"runtime"` // the Go runtime's figures
}

// Settings is the part of a Config a report shows.
// Each field is the Config field of the same name, defaults filled in.
type Settings struct {
	Batch               BatchConfig   `json:"batch"`
	Health              HealthConfig  `json:"health"`
	AutoOptimize        bool          `json:"auto_optimize"`
	MaxInstances        int           `json:"max_instances"`
	Window              time.Duration `json:"window_ns"`
	MonitoringInterval  time.Duration `json:"monitoring_interval_ns"`
	HealthCheckInterval time.Duration `json:"health_check_interval_ns"`
	Debug               bool          `json:"debug"`
}

// PerformanceReport is the original library's performance report: every
// plugin's metrics, their total, the system status and the settings.
type PerformanceReport struct {
	GeneratedAt time.Time `json:"generated_at"` // on the Manager's clock
	Settings    Settings  `json:"settings"`     // the configuration in force
	// Total merges every plugin's metrics (Name "total").
	Total fleet.PluginMetrics `json:"total"`
	// Plugins is sorted by name.
	Plugins []fleet.PluginMetrics `json:"plugins"`
	// System is the SystemStatus at the time of the report.
	System SystemStatus `json:"system"`
}
