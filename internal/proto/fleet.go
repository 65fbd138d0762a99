package proto

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dataflare/dataflare/fleet"
)

// DefaultHeartbeat is how often workers send heartbeats.
const DefaultHeartbeat = time.Second

// Heartbeat is what a worker publishes on df.hb.<worker> every interval.
type Heartbeat struct {
	Worker   string        `json:"worker"`
	Host     string        `json:"host,omitempty"`
	PID      int           `json:"pid,omitempty"`
	Seq      uint64        `json:"seq"`
	Started  time.Time     `json:"started"`
	At       time.Time     `json:"at"`
	Interval time.Duration `json:"interval_ns"`
	// Parallel is how many batches the worker runs at once, InFlight how
	// many it runs now.
	Parallel int `json:"parallel"`
	InFlight int `json:"in_flight"`
	// Draining is set when the worker stopped pulling work to shut down;
	// Leaving on its very last heartbeat.
	Draining bool `json:"draining,omitempty"`
	Leaving  bool `json:"leaving,omitempty"`
	// Plugins are the plugins the worker has run or can run.
	Plugins []PluginBeat `json:"plugins"`
	// Pool is the worker's memory pool, Pressure its memory pressure (0..1).
	Pool     fleet.PoolStats    `json:"pool"`
	Pressure float64            `json:"pressure"`
	Runtime  fleet.RuntimeStats `json:"runtime"`
}

// PluginBeat is one plugin in a heartbeat.
type PluginBeat struct {
	Name string `json:"name"`
	// Native plugins are compiled into the worker; the others are
	// WebAssembly modules, of which Digests are loaded now.
	Native  bool     `json:"native,omitempty"`
	Digests []string `json:"digests,omitempty"`
	// Estimate is the worker's cost model of the plugin, for the sizer.
	Estimate fleet.Estimate `json:"estimate"`
	// Metrics are the worker's cumulative metrics of the plugin.
	Metrics fleet.PluginMetrics `json:"metrics"`
}

// DeadLetterMsg returns the message that stores dl in DF_DEAD, with a
// de-duplication id unique to the record.
func DeadLetterMsg(dl *fleet.DeadLetter) *nats.Msg {
	b, _ := json.Marshal(dl) // cannot fail: plain data
	m := &nats.Msg{Subject: DeadSubject(dl.Job), Data: b, Header: nats.Header{}}
	m.Header.Set(HeaderMsgID, dl.Job+".dead."+strconv.FormatUint(dl.Index, 10))
	return m
}
