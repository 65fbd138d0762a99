// Command identity-wasm returns every record unchanged: the cheapest Go
// plugin, for measuring what the ABI and the Go runtime cost.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false -o identity.wasm .
package main

import (
	"github.com/dataflare/dataflare/pdk"
	"github.com/dataflare/dataflare/plugin"
)

func init() {
	pdk.Handle(plugin.Info{
		Name:        "identity-wasm",
		Version:     "1.0.0",
		Type:        plugin.Transformer,
		Description: "returns each value unchanged",
		Author:      "DataFlare",
	}, func(_ plugin.Config, r plugin.Record) (plugin.Result, error) {
		return plugin.Value(r.Value), nil // the same slice: sent back as "unchanged"
	})
}

// main is not called: a reactor module runs its init functions only.
func main() {}
