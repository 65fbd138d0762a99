package wasm_test

import (
	"context"
	"fmt"
	"os"

	"github.com/dataflare/dataflare/manager"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
	"github.com/dataflare/dataflare/wasm"
)

// A WebAssembly plugin is registered with a Manager like a native one, and
// gives the same results.
func Example() {
	ctx := context.Background()
	rt, err := wasm.NewRuntime(ctx, wasm.WithInstances(2))
	if err != nil {
		panic(err)
	}
	defer rt.Close(ctx)
	module, err := os.ReadFile("testdata/abi_upper.wasm") // the upper plugin, in WAT
	if err != nil {
		panic(err)
	}
	p, err := rt.Load(ctx, module)
	if err != nil {
		panic(err)
	}
	defer p.Close()

	m, err := manager.New(manager.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer m.Close()
	if err := m.RegisterBatch("upper", builtin.Upper{}); err != nil {
		panic(err)
	}
	if err := m.RegisterBatch("upper-wat", p); err != nil {
		panic(err)
	}
	recs := []plugin.Record{{Value: []byte("hello")}, {Value: []byte("wasm")}}
	for _, name := range []string{"upper", "upper-wat"} {
		res, err := m.ProcessBatch(ctx, name, nil, recs)
		if err != nil {
			panic(err)
		}
		fmt.Println(name, string(res.Results[0].Value), string(res.Results[1].Value))
	}
	fmt.Println(p.Info())
	// Output:
	// upper HELLO WASM
	// upper-wat HELLO WASM
	// abi-upper@1.0.0
}

// A module that imports a filesystem call is refused when it is loaded.
func ExampleRuntime_Load_refused() {
	ctx := context.Background()
	rt, err := wasm.NewRuntime(ctx)
	if err != nil {
		panic(err)
	}
	defer rt.Close(ctx)
	module, err := os.ReadFile("testdata/path_open.wasm")
	if err != nil {
		panic(err)
	}
	_, err = rt.Load(ctx, module)
	fmt.Println(err)
	// Output:
	// wasm: forbidden import: module sha256:f766e299dda0: wasi_snapshot_preview1.path_open: the sandbox has no filesystem or network (see docs/abi.md)
}
