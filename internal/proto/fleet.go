package proto

import (
	"crypto/sha256"
	"encoding/hex"
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
	// Breaker is the plugin's circuit breaker on the worker (its modules'
	// merged, for a WebAssembly plugin), once it has opened.
	Breaker *fleet.Breaker `json:"breaker,omitempty"`
}

// What of a record a dead letter keeps: base64 makes the value and key a
// third larger in the entry's JSON, which stays under MaxDeadLetterBytes.
const (
	deadValueBytes = 128 << 10
	deadKeyBytes   = 16 << 10
	deadErrorBytes = 4 << 10
)

// DeadLetterMsg returns the message that stores dl in DF_DEAD, with a
// de-duplication id unique to the record.
//
// An entry fits MaxDeadLetterBytes: a value over deadValueBytes (a key
// over deadKeyBytes, an error over deadErrorBytes) is cut, and the entry
// says so; ValueBytes and ValueSHA256 always describe the whole value.
func DeadLetterMsg(dl *fleet.DeadLetter) *nats.Msg {
	e := *dl
	e.ValueBytes = len(dl.Value)
	sum := sha256.Sum256(dl.Value)
	e.ValueSHA256 = "sha256:" + hex.EncodeToString(sum[:])
	if len(e.Value) > deadValueBytes {
		e.Value, e.Truncated = e.Value[:deadValueBytes], true
	}
	if len(e.Key) > deadKeyBytes {
		e.Key, e.Truncated = e.Key[:deadKeyBytes], true
	}
	if len(e.Error) > deadErrorBytes {
		e.Error = e.Error[:deadErrorBytes] + "…"
	}
	b, _ := json.Marshal(&e) // cannot fail: plain data
	m := &nats.Msg{Subject: DeadSubject(dl.Job), Data: b, Header: nats.Header{}}
	m.Header.Set(HeaderMsgID, dl.Job+".dead."+strconv.FormatUint(dl.Index, 10))
	return m
}
