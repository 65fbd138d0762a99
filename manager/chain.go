package manager

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/dataflare/dataflare/plugin"
)

// ChainStep is one plugin of a chain: the name it is registered under,
// the configuration it runs with, and how errors name it (Label; default
// Name).
type ChainStep struct {
	Name   string
	Config plugin.Config
	Label  string
}

func (s ChainStep) label() string {
	if s.Label != "" {
		return s.Label
	}
	return s.Name
}

// ProcessChain runs recs through steps in turn, in one pass: each step
// gets the records the previous one kept, with their new values (keys,
// headers and timestamps unchanged). It returns exactly one Result per
// input record, in order: the last step's value, Dropped when a step
// filtered the record out, or the error of the step that failed it — a
// *StepError naming the step, wrapping the record's error (so errors.Is
// and plugin.CodeOf see through it). Duration is the whole chain's.
//
// release, when not nil, is called with every step's result once the
// values the chain keeps are copied out of it: a WebAssembly plugin's
// results may live in pooled buffers (see package wasm). The returned
// values are the chain's own.
//
// A step that fails the batch as a whole ends the chain; the error is a
// *StepError wrapping ProcessBatch's. A chain of no step returns the
// records unchanged.
func (m *Manager) ProcessChain(ctx context.Context, steps []ChainStep, recs []plugin.Record, release func(*plugin.BatchResult)) (*plugin.BatchResult, error) {
	start := m.clock()
	out := make([]plugin.Result, len(recs))
	alive := make([]int, len(recs)) // the input index of each record still in the chain
	cur := make([]plugin.Record, len(recs))
	for i := range recs {
		alive[i] = i
		cur[i] = recs[i]
	}
	for si, st := range steps {
		if len(cur) == 0 {
			break
		}
		res, err := m.ProcessBatch(ctx, st.Name, st.Config, cur)
		if err != nil {
			return nil, &StepError{Step: si + 1, Plugin: st.label(), Err: err}
		}
		n := 0
		for j, r := range res.Results {
			idx := alive[j]
			switch {
			case r.Err != nil:
				out[idx] = plugin.Fail(&StepError{Step: si + 1, Plugin: st.label(), Err: r.Err})
			case r.Dropped:
				out[idx] = plugin.Drop()
			default:
				rec := cur[j]
				rec.Value = bytes.Clone(r.Value)
				cur[n], alive[n] = rec, idx
				n++
			}
		}
		if release != nil {
			release(res)
		}
		cur, alive = cur[:n], alive[:n]
	}
	for j, idx := range alive {
		out[idx] = plugin.Value(cur[j].Value)
	}
	return &plugin.BatchResult{Results: out, Duration: max(m.clock().Sub(start), time.Duration(0))}, nil
}

// StepError is the error of one step of a chain: the step's number
// (from 1) and plugin, and its error.
type StepError struct {
	Step   int
	Plugin string
	Err    error
}

// Error returns "step N (plugin): error".
func (e *StepError) Error() string { return fmt.Sprintf("step %d (%s): %v", e.Step, e.Plugin, e.Err) }

// Unwrap returns the step's error.
func (e *StepError) Unwrap() error { return e.Err }
