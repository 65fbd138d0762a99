package fleet

import "time"

// Worker is one worker in a Status.
type Worker struct {
	ID            string        `json:"id"`
	Host          string        `json:"host,omitempty"`
	Health        Health        `json:"health"`
	LastHeartbeat time.Time     `json:"last_heartbeat"`
	Age           time.Duration `json:"age_ns"`
	Started       time.Time     `json:"started"`
	Parallel      int           `json:"parallel"`
	InFlight      int           `json:"in_flight"`
	Pressure      float64       `json:"pressure"`
	Plugins       []string      `json:"plugins"`
	Processed     uint64        `json:"processed"`
	Goroutines    int           `json:"goroutines"`
	HeapBytes     uint64        `json:"heap_bytes"`
	// Breakers are the circuit breakers of the worker's plugins that
	// have opened at least once, by plugin name.
	Breakers []PluginBreaker `json:"breakers,omitempty"`
}

// Plugin is one plugin in a Status.
type Plugin struct {
	Name    string   `json:"name"`
	Native  bool     `json:"native,omitempty"`
	Digests []string `json:"digests,omitempty"`
	// Workers counts the live workers that report the plugin.
	Workers int `json:"workers"`
	// BatchSize is the size batches are cut at now; Sizer says why.
	BatchSize int         `json:"batch_size"`
	Sizer     SizerStatus `json:"sizer"`
	// Metrics merges the live workers' metrics of the plugin.
	Metrics PluginMetrics `json:"metrics"`
	// Breaker merges the plugin's circuit breakers on the live workers
	// (nil when none ever opened); OutOfService counts the live workers
	// where it is open or half-open.
	Breaker      *Breaker `json:"breaker,omitempty"`
	OutOfService int      `json:"out_of_service,omitempty"`
}

// Status is the reply to SubjectStatus.
type Status struct {
	Coordinator string    `json:"coordinator"`
	At          time.Time `json:"at"`
	Workers     []Worker  `json:"workers"`
	Plugins     []Plugin  `json:"plugins"`
	// PendingBatches are batches waiting in DF_BATCHES (or running),
	// ResultMessages result messages not yet read, DeadLetters entries in
	// DF_DEAD.
	PendingBatches uint64 `json:"pending_batches"`
	// Queues are the batch queues by owner and priority (those with
	// batches pending or in flight).
	Queues         []Queue `json:"queues,omitempty"`
	ResultMessages uint64  `json:"result_messages"`
	DeadLetters    uint64  `json:"dead_letters"`
}

// Report is the reply to SubjectReport: the original library's
// performance report, for the whole fleet.
type Report struct {
	GeneratedAt time.Time `json:"generated_at"`
	// Total merges every plugin on every live worker (see Total).
	Total PluginMetrics `json:"total"`
	// Plugins merges each plugin across the live workers, by name.
	Plugins []PluginMetrics `json:"plugins"`
	// Workers is each live worker's report of its own plugins.
	Workers []WorkerReport `json:"workers"`
	Fleet   Status         `json:"fleet"`
}

// WorkerReport is one worker's part of a Report.
type WorkerReport struct {
	ID      string          `json:"id"`
	Plugins []PluginMetrics `json:"plugins"`
	Pool    PoolStats       `json:"pool"`
	Runtime RuntimeStats    `json:"runtime"`
}

// DeadLetter is an entry in DF_DEAD: a record that failed on every
// delivery, kept with its error so it can be inspected and replayed.
type DeadLetter struct {
	Job    string `json:"job"`
	Index  uint64 `json:"index"`
	Plugin string `json:"plugin"`
	Digest string `json:"digest,omitempty"`
	Error  string `json:"error"`
	Key    []byte `json:"key,omitempty"`
	Value  []byte `json:"value"`
	// ValueBytes is the size of the record's value and ValueSHA256 its
	// digest ("sha256:<hex>"). Truncated says that Key or Value was cut
	// to fit the dead-letter store: they hold their first bytes only.
	ValueBytes  int       `json:"value_bytes"`
	ValueSHA256 string    `json:"value_sha256,omitempty"`
	Truncated   bool      `json:"truncated,omitempty"`
	Worker      string    `json:"worker,omitempty"`
	Attempts    int       `json:"attempts"`
	At          time.Time `json:"at"`
}
