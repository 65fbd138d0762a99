package pdk

import (
	"errors"
	"fmt"
	"maps"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
)

// RecordFunc processes one record under the job's configuration cfg. A
// returned error is that record's error (plugin.CodeOf classifies it: use
// plugin.Errorf or the plugin sentinels to choose the code); the batch goes
// on. A Result whose Value is the record's own Value (the same slice) is
// sent back as "unchanged", without a copy. r's slices are valid only
// during the call.
type RecordFunc func(cfg plugin.Config, r plugin.Record) (plugin.Result, error)

// TransformFunc appends the new value of a record to dst and returns the
// extended slice; the kit has already placed dst in the output, so the
// value is written once. A returned error is the record's error.
type TransformFunc func(cfg plugin.Config, dst, value []byte) ([]byte, error)

// BatchFunc processes a whole batch: it sets out[i] for each recs[i]
// (len(out) == len(recs), all zero on entry). A returned error fails the
// whole batch.
type BatchFunc func(cfg plugin.Config, recs []plugin.Record, out []plugin.Result) error

// Handle registers fn as the plugin, processing one record at a time.
// Call it (or HandleTransform, or HandleBatch) exactly once, from an init
// function: a reactor module runs its init functions, not main.
func Handle(info plugin.Info, fn RecordFunc) { register(info, recordHandler(fn)) }

// HandleTransform registers fn as the plugin: a transformer that writes
// each new value straight into the output. It is the fastest shape for
// plugins that compute a value per record.
func HandleTransform(info plugin.Info, fn TransformFunc) { register(info, transformHandler(fn)) }

// HandleBatch registers fn as the plugin, processing a batch per call.
func HandleBatch(info plugin.Info, fn BatchFunc) { register(info, batchHandler(fn)) }

// OnConfig registers fn to be called with a job's configuration before
// the first record of the first batch that carries it, and again whenever
// the configuration changes: parse it once there, keep the result in
// package variables (an instance runs one batch at a time). A returned
// error fails the batch — use plugin.ErrInvalidInput (the default code) for
// a bad configuration.
func OnConfig(fn func(plugin.Config) error) { theKit.onConfig = fn }

// ErrNoPlugin is the batch error of a module that registered no plugin.
var ErrNoPlugin = errors.New("pdk: no plugin registered: call pdk.Handle, HandleTransform or HandleBatch from an init function")

// handler runs one decoded batch, appending one entry per record to out,
// or returns a batch-level error.
type handler interface {
	run(k *kit, out []byte) ([]byte, error)
}

// kit is the guest side of the ABI: the registered plugin and the buffers
// it reuses from batch to batch.
type kit struct {
	info     []byte
	h        handler
	onConfig func(plugin.Config) error

	in      []byte // the host's input region (df_alloc)
	b       batch.Batch
	results []plugin.Result
	out     []byte

	configured bool
	config     plugin.Config
}

var theKit kit

func register(info plugin.Info, h handler) { theKit.register(info, h) }

func (k *kit) register(info plugin.Info, h handler) {
	if info.APIVersion == "" {
		info.APIVersion = plugin.APIVersion
	}
	k.info = info.JSON()
	k.h = h
}

// alloc returns the input region for a batch of size bytes, reusing the
// last one when it is large enough.
func (k *kit) alloc(size int) []byte {
	if size < 0 {
		return nil
	}
	if cap(k.in) < size || size == 0 {
		k.in = make([]byte, max(size, 1))
	}
	return k.in[:size]
}

// process runs the batch message msg and returns the output: the results
// section, or (failed true) one error entry for the whole batch. The
// output is valid until the next call.
func (k *kit) process(msg []byte) (out []byte, failed bool) {
	out, err := k.run(msg)
	if err != nil {
		if plugin.CodeOf(err) == plugin.CodeUnknown {
			err = &plugin.Error{Code: plugin.CodeProcessing, Message: err.Error()}
		}
		k.out = batch.AppendEntry(k.out[:0], plugin.Fail(err))
		return k.out, true
	}
	k.out = out
	return out, false
}

// refuse returns the batch error of a df_process call whose message is not
// in the region df_alloc gave the host.
func (k *kit) refuse(ptr, size int32) (out []byte, failed bool) {
	err := plugin.Errorf(plugin.CodeInvalidInput, "pdk: df_process(%#x, %d) is outside the region df_alloc returned", ptr, size)
	k.out = batch.AppendEntry(k.out[:0], plugin.Fail(err))
	return k.out, true
}

func (k *kit) run(msg []byte) (out []byte, err error) {
	if k.h == nil {
		return nil, ErrNoPlugin
	}
	if err := batch.DecodeBatch(msg, &k.b); err != nil {
		if plugin.CodeOf(err) == plugin.CodeUnknown {
			return nil, &plugin.Error{Code: plugin.CodeInvalidInput, Message: "pdk: " + err.Error()}
		}
		return nil, err
	}
	if err := k.configure(); err != nil {
		return nil, err
	}
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, plugin.PanicError(v)
		}
	}()
	return k.h.run(k, k.out[:0])
}

// configure calls onConfig when the batch's configuration differs from the
// last one it accepted.
func (k *kit) configure() error {
	cfg := k.b.Config
	if k.onConfig == nil || k.configured && maps.Equal(k.config, cfg) {
		return nil
	}
	k.configured = false
	if err := callConfig(k.onConfig, cfg); err != nil {
		if plugin.CodeOf(err) == plugin.CodeUnknown {
			return &plugin.Error{Code: plugin.CodeInvalidInput, Message: err.Error(), Err: err}
		}
		return err
	}
	k.config, k.configured = maps.Clone(cfg), true
	return nil
}

func callConfig(fn func(plugin.Config) error, cfg plugin.Config) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = plugin.PanicError(v)
		}
	}()
	return fn(cfg)
}

// appendResult appends the entry of r, the result of rec: "unchanged" when
// r's value is rec's value, an error entry when r does not fit the wire
// limits.
func appendResult(out []byte, rec *plugin.Record, r plugin.Result) []byte {
	if r.Err == nil && !r.Dropped && len(r.Value) > 0 && len(r.Value) == len(rec.Value) && &r.Value[0] == &rec.Value[0] {
		return batch.AppendUnchanged(out)
	}
	if err := batch.DefaultLimits.CheckResult(r); err != nil {
		r = plugin.Fail(err)
	}
	return batch.AppendEntry(out, r)
}

type recordHandler RecordFunc

func (fn recordHandler) run(k *kit, out []byte) ([]byte, error) {
	cfg := k.b.Config
	recs := k.b.Records
	for i := 0; i < len(recs); {
		// A panic ends recordRange at record i; it gets the panic as its
		// error and the loop goes on after it. Recovering once per panic,
		// not once per record, keeps the common path free of defers.
		var next int
		out, next = fn.recordRange(cfg, recs, i, out)
		i = next
	}
	return out, nil
}

// recordRange processes recs from i on, appending entries to out, and
// returns the extended out and the index to go on from: len(recs), or the
// record after one that panicked (whose entry is then the panic's error).
func (fn recordHandler) recordRange(cfg plugin.Config, recs []plugin.Record, i int, dst []byte) (out []byte, next int) {
	out = dst
	defer func() {
		if v := recover(); v != nil {
			out = appendResult(out, &recs[i], plugin.Fail(plugin.PanicError(v)))
			next = i + 1
		}
	}()
	for ; i < len(recs); i++ {
		res, err := fn(cfg, recs[i])
		if err != nil {
			res = plugin.Fail(err)
		}
		out = appendResult(out, &recs[i], res)
	}
	return out, i
}

type transformHandler TransformFunc

func (fn transformHandler) run(k *kit, out []byte) ([]byte, error) {
	cfg := k.b.Config
	recs := k.b.Records
	for i := 0; i < len(recs); {
		var next int
		out, next = fn.transformRange(cfg, recs, i, out)
		i = next
	}
	return out, nil
}

// transformRange is recordRange for a TransformFunc.
func (fn transformHandler) transformRange(cfg plugin.Config, recs []plugin.Record, i int, dst []byte) (out []byte, next int) {
	out = dst
	start := len(out)
	defer func() {
		if v := recover(); v != nil {
			out = batch.AppendEntry(out[:start], plugin.Fail(plugin.PanicError(v)))
			next = i + 1
		}
	}()
	maxValue := batch.DefaultLimits.MaxValueSize
	for ; i < len(recs); i++ {
		start = len(out)
		out = append(out, 0, 0, 0, 0, 0, 0, 0, 0) // status 0, len patched below
		grown, err := fn(cfg, out, recs[i].Value)
		n := len(grown) - len(out)
		switch {
		case err != nil:
		case n < 0 || string(grown[start:start+8]) != "\x00\x00\x00\x00\x00\x00\x00\x00":
			err = fmt.Errorf("pdk: a TransformFunc must append to dst and return the extended slice")
		case n > maxValue:
			err = plugin.Errorf(plugin.CodeTooLarge, "pdk: value of %d bytes is over the %d-byte limit", n, maxValue)
		}
		if err != nil {
			out = batch.AppendEntry(out[:start], plugin.Fail(err))
			continue
		}
		out = grown
		le32(out[start+4:], uint32(n))
	}
	return out, i
}

func le32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

type batchHandler BatchFunc

func (fn batchHandler) run(k *kit, out []byte) ([]byte, error) {
	n := len(k.b.Records)
	if cap(k.results) < n {
		k.results = make([]plugin.Result, n)
	}
	res := k.results[:n]
	clear(res)
	if err := fn(k.b.Config, k.b.Records, res); err != nil {
		return nil, err
	}
	for i := range res {
		out = appendResult(out, &k.b.Records[i], res[i])
	}
	clear(res) // drop references to this batch's values
	return out, nil
}
