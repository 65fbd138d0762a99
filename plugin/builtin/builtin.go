package builtin

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/dataflare/dataflare/plugin"
)

// Names of the built-in plugins.
const (
	IdentityName = "identity"
	UpperName    = "upper"
	DelayName    = "delay"
	FailName     = "fail"
)

// Version is the version every built-in plugin reports in its Info.
const Version = "1.0.0"

// All returns a new map from name to plugin holding every built-in plugin.
// The caller may modify the map.
func All() map[string]plugin.BatchPlugin {
	return map[string]plugin.BatchPlugin{
		IdentityName: Identity{},
		UpperName:    Upper{},
		DelayName:    Delay{},
		FailName:     Fail{},
	}
}

// Names returns the names of the built-in plugins, sorted.
func Names() []string {
	names := []string{IdentityName, UpperName, DelayName, FailName}
	slices.Sort(names)
	return names
}

// Registrar is what Register needs: a *manager.Manager satisfies it.
type Registrar interface {
	RegisterBatch(name string, p plugin.BatchPlugin) error
}

// Register registers every built-in plugin with r under its name, in the
// order of Names. It stops at, and returns, the first error of
// r.RegisterBatch (with a *manager.Manager: manager.ErrDuplicate when a name
// is taken, manager.ErrClosed after Close).
func Register(r Registrar) error {
	all := All()
	for _, name := range Names() {
		if err := r.RegisterBatch(name, all[name]); err != nil {
			return fmt.Errorf("builtin: register %s: %w", name, err)
		}
	}
	return nil
}

func info(name string, t plugin.Type, desc string) plugin.Info {
	return plugin.Info{
		Name:        name,
		Version:     Version,
		Type:        t,
		Description: desc,
		Author:      "DataFlare",
		APIVersion:  plugin.APIVersion,
	}
}

// start checks ctx before a batch runs.
func start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return plugin.ContextError(err)
	}
	return nil
}

// Identity returns every record's value unchanged. The results alias the
// input records (zero copy).
type Identity struct{}

// Info describes the plugin.
func (Identity) Info() plugin.Info {
	return info(IdentityName, plugin.Transformer, "returns each value unchanged")
}

// ProcessBatch returns one result per record whose Value is the record's
// Value. It returns an error only when ctx is already done: one matching
// context.DeadlineExceeded (plugin.ErrTimeout) or wrapping context.Canceled
// (plugin.ErrUnavailable).
func (Identity) ProcessBatch(ctx context.Context, _ plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	if err := start(ctx); err != nil {
		return nil, err
	}
	t0 := time.Now()
	out := make([]plugin.Result, len(recs))
	for i := range recs {
		out[i].Value = recs[i].Value
	}
	return &plugin.BatchResult{Results: out, Duration: time.Since(t0)}, nil
}

// Delay sleeps for the configured time per record and returns the values
// unchanged. Config: ms, an integer number of milliseconds per record,
// 0 ≤ ms ≤ MaxDelayMillis (absent means 0). A record header "ms" overrides
// the configuration for that record, so one job can change its cost midway
// (the batch-size tests do). The batch sleeps the sum in one wait.
type Delay struct{}

// MaxDelayMillis is the largest ms the delay plugin accepts (one minute,
// a worker's default batch timeout).
const MaxDelayMillis = 60_000

// Info describes the plugin.
func (Delay) Info() plugin.Info {
	return info(DelayName, plugin.Transformer, "sleeps ms milliseconds per record; values unchanged")
}

// ProcessBatch waits ms × len(recs) milliseconds, then returns the values
// unchanged (aliasing the input). A ms that is not an integer, is negative
// or is over MaxDelayMillis fails the batch with an error wrapping
// plugin.ErrInvalidInput. When ctx is done before the wait ends the batch
// fails with plugin.ContextError(ctx.Err()): it matches
// context.DeadlineExceeded for a deadline and wraps context.Canceled for a
// cancellation.
func (Delay) ProcessBatch(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	ms, err := cfg.Int("ms", 0)
	if err != nil {
		return nil, fmt.Errorf("delay: %w", err)
	}
	if ms < 0 || ms > MaxDelayMillis {
		return nil, fmt.Errorf("%w: delay: config ms=%d is outside [0, %d]", plugin.ErrInvalidInput, ms, MaxDelayMillis)
	}
	if err := start(ctx); err != nil {
		return nil, err
	}
	t0 := time.Now()
	var total time.Duration
	for i := range recs {
		d := ms
		if h, ok := recs[i].Header("ms"); ok {
			if d, err = strconv.Atoi(string(h)); err != nil || d < 0 || d > MaxDelayMillis {
				return nil, fmt.Errorf("%w: delay: record %d: header ms=%q is not an integer in [0, %d]", plugin.ErrInvalidInput, i, h, MaxDelayMillis)
			}
		}
		total += time.Duration(d) * time.Millisecond
	}
	if wait := total; wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, plugin.ContextError(ctx.Err())
		}
	}
	out := make([]plugin.Result, len(recs))
	for i := range recs {
		out[i].Value = recs[i].Value
	}
	return &plugin.BatchResult{Results: out, Duration: time.Since(t0)}, nil
}

// Fail fails the records whose value contains the configured string.
// Config: match, the string to look for; when it is absent or empty no
// record fails. The other records pass unchanged (aliasing the input).
type Fail struct{}

// Info describes the plugin.
func (Fail) Info() plugin.Info {
	return info(FailName, plugin.Validator, "fails records whose value contains match; the others pass unchanged")
}

// ProcessBatch gives each record whose value contains cfg["match"] a
// per-record *plugin.Error of plugin.CodeProcessing (it matches
// plugin.ErrProcessing); every other result carries the record's value. The
// batch itself fails only when ctx is already done (see Identity).
func (Fail) ProcessBatch(ctx context.Context, cfg plugin.Config, recs []plugin.Record) (*plugin.BatchResult, error) {
	if err := start(ctx); err != nil {
		return nil, err
	}
	t0 := time.Now()
	match := []byte(cfg.Get("match"))
	out := make([]plugin.Result, len(recs))
	var fail error // one error value shared by every failing record
	for i := range recs {
		v := recs[i].Value
		if len(match) > 0 && bytes.Contains(v, match) {
			if fail == nil {
				fail = &plugin.Error{Code: plugin.CodeProcessing, Message: fmt.Sprintf("fail: value contains %q", match)}
			}
			out[i].Err = fail
			continue
		}
		out[i].Value = v
	}
	return &plugin.BatchResult{Results: out, Duration: time.Since(t0)}, nil
}
