// Command upper-wasm is the WebAssembly twin of the native upper plugin:
// each value's ASCII letters upper-cased, byte for byte the same output.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false -o upper.wasm .
package main

import (
	"github.com/dataflare/dataflare/pdk"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

func init() {
	pdk.HandleTransform(plugin.Info{
		Name:        "upper-wasm",
		Version:     "1.0.0",
		Type:        plugin.Transformer,
		Description: "ASCII upper-case of each value (the WebAssembly twin of upper)",
		Author:      "DataFlare",
	}, func(_ plugin.Config, dst, value []byte) ([]byte, error) {
		return builtin.AppendUpper(dst, value), nil
	})
}

// main is not called: a reactor module runs its init functions only.
func main() {}
