package builtin_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/dataflare/dataflare/manager"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

func Example() {
	ctx := context.Background()
	records := []plugin.Record{{Value: []byte("hello")}, {Value: []byte("bad apple")}, {Value: []byte("world")}}

	up, _ := builtin.Upper{}.ProcessBatch(ctx, nil, records)
	for _, r := range up.Results {
		fmt.Println(string(r.Value))
	}

	// fail: records containing "bad" get a per-record error.
	res, _ := builtin.Fail{}.ProcessBatch(ctx, plugin.Config{"match": "bad"}, records)
	fmt.Println("succeeded", res.Succeeded(), "failed", res.Failed())
	for _, e := range res.Errors() {
		fmt.Println(e, errors.Is(e, plugin.ErrProcessing))
	}

	// delay: a bad configuration fails the whole batch.
	_, err := builtin.Delay{}.ProcessBatch(ctx, plugin.Config{"ms": "abc"}, records)
	fmt.Println(errors.Is(err, plugin.ErrInvalidInput))
	// Output:
	// HELLO
	// BAD APPLE
	// WORLD
	// succeeded 2 failed 1
	// record 1: fail: value contains "bad" true
	// true
}

func ExampleAppendUpper() {
	fmt.Printf("%s\n", builtin.AppendUpper([]byte("> "), []byte("straße, ascii only")))
	// Output: > STRAßE, ASCII ONLY
}

func ExampleRegister() {
	m, err := manager.New(manager.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer m.Close()
	if err := builtin.Register(m); err != nil {
		panic(err)
	}
	for _, info := range m.Plugins() {
		fmt.Println(info.Name, info.Type)
	}
	res, err := m.ProcessRecord(context.Background(), builtin.UpperName, nil, plugin.Record{Value: []byte("hello")})
	fmt.Println(string(res.Value), err)
	// Output:
	// delay transformer
	// fail validator
	// identity transformer
	// upper transformer
	// HELLO <nil>
}
