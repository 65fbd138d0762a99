package localtest

import (
	"context"
	"strings"

	"github.com/dataflare/dataflare/plugin"
)

// Picky is a native plugin for tests of poison and dead letters: it fails
// as a whole a batch that holds a record whose value contains its
// configuration's "match" (default "bad"), so that a worker isolates each
// such record, which gets a poison error and a dead letter. It upper-cases
// the other records (ASCII).
type Picky struct{}

// Info names the plugin "picky".
func (Picky) Info() plugin.Info { return plugin.Info{Name: "picky", Version: "1.0.0"} }

// ProcessBatch fails the batch when a record matches, else upper-cases
// every record.
func (Picky) ProcessBatch(_ context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	match := cfg["match"]
	if match == "" {
		match = "bad"
	}
	out := make([]plugin.Result, len(recs))
	for i, r := range recs {
		if strings.Contains(string(r.Value), match) {
			return nil, &plugin.Error{Code: plugin.CodeProcessing, Message: "picky: " + string(r.Value)}
		}
		out[i] = plugin.Value([]byte(strings.ToUpper(string(r.Value))))
	}
	return &plugin.BatchResult{Results: out}, nil
}
