// Package plugin is the contract every DataFlare package shares: the Record a
// plugin reads, the Result it returns, its Info and State, the errors, and the
// two plugin shapes — Plugin (one record at a time) and BatchPlugin (a whole
// batch per call) — with the Adapter that turns the first into the second.
// Either shape is two methods: Info, and Process or ProcessBatch.
//
// A plugin that works on one record:
//
//	type upper struct{}
//
//	func (upper) Info() plugin.Info { return plugin.Info{Name: "upper", Version: "1.0.0", Type: plugin.Transformer} }
//	func (upper) Process(ctx context.Context, cfg plugin.Config, r plugin.Record) (plugin.Result, error) {
//		return plugin.Value(bytes.ToUpper(r.Value)), nil
//	}
//
//	bp := plugin.Adapt(upper{}, plugin.WithParallelism(4))
//	res, err := bp.ProcessBatch(ctx, nil, records)
//
// Two methods are optional, found by type assertion as io.Copy finds
// io.WriterTo: a plugin that reports its own lifecycle implements Stater
// (State; without it a plugin is taken as Ready), one with a view on its
// batch size implements BatchSizer (OptimizeBatchSize; without it, no
// opinion). The adapter passes both on from the Plugin it wraps.
//
// Records handed to a plugin may alias a larger buffer (the message they were
// decoded from): a plugin must not keep a Record's byte slices after Process or
// ProcessBatch returns, and must not modify them. A Result's Value may alias
// the input record (returning r.Value unchanged is free).
//
// The in-process PluginManager of the original library lives in package
// manager; the fleet-wide one in package client.
package plugin
