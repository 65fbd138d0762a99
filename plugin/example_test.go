package plugin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/dataflare/dataflare/plugin"
)

// shout upper-cases values and refuses empty ones.
type shout struct{}

func (shout) Info() plugin.Info {
	return plugin.Info{Name: "shout", Version: "1.0.0", Type: plugin.Transformer, APIVersion: plugin.APIVersion}
}

func (shout) Process(_ context.Context, _ plugin.Config, r plugin.Record) (plugin.Result, error) {
	if len(r.Value) == 0 {
		return plugin.Result{}, plugin.Errorf(plugin.CodeInvalidInput, "shout: empty value")
	}
	return plugin.Value(bytes.ToUpper(r.Value)), nil
}

func ExampleAdapt() {
	bp := plugin.Adapt(shout{}, plugin.WithParallelism(2))
	recs := []plugin.Record{
		{Value: []byte("hello")},
		{Value: nil},
		{Value: []byte("world")},
	}
	res, err := bp.ProcessBatch(context.Background(), nil, recs)
	if err != nil {
		fmt.Println("batch failed:", err)
		return
	}
	for i, r := range res.Results {
		if r.Err != nil {
			fmt.Printf("%d: error: %v\n", i, r.Err)
			continue
		}
		fmt.Printf("%d: %s\n", i, r.Value)
	}
	fmt.Printf("%s: %d succeeded, %d failed\n", bp.Info(), res.Succeeded(), res.Failed())
	// Output:
	// 0: HELLO
	// 1: error: shout: empty value
	// 2: WORLD
	// shout@1.0.0: 2 succeeded, 1 failed
}

func ExampleCodeOf() {
	errs := []error{
		plugin.Errorf(plugin.CodeTrap, "wasm: unreachable"),
		fmt.Errorf("worker: %w", plugin.ErrTooLarge),
		context.DeadlineExceeded,
		errors.New("something else"),
		nil,
	}
	for _, err := range errs {
		fmt.Println(plugin.CodeOf(err))
	}
	// Output:
	// wasm trap
	// too large
	// deadline exceeded
	// unknown
	// unknown
}
