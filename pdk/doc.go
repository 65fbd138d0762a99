// Package pdk is the guest side of DataFlare's WebAssembly plugin ABI for
// Go: write a function over one record (or a batch), build with the
// standard toolchain, push the module, and every worker runs it.
//
//	package main
//
//	import (
//		"bytes"
//
//		"github.com/dataflare/dataflare/pdk"
//		"github.com/dataflare/dataflare/plugin"
//	)
//
//	func init() {
//		pdk.Handle(plugin.Info{Name: "shout", Version: "1.0.0"},
//			func(cfg plugin.Config, r plugin.Record) (plugin.Result, error) {
//				return plugin.Value(bytes.ToUpper(r.Value)), nil
//			})
//	}
//
//	func main() {}
//
// Build it as a WASI reactor and push it:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o shout.wasm .
//	dataflare plugin push shout shout.wasm
//
// The kit exports df_abi_version (returning batch.ABIVersion), df_info,
// df_alloc and df_process, decodes each batch message with package batch
// (zero copy), calls the registered function, and encodes one result entry
// per record: a record returned
// unchanged costs no copy, a panic becomes that record's error (code
// panic), a value over the wire limit becomes an error (code too large).
// OnConfig parses a job's configuration once per distinct configuration;
// its error fails the batch. HandleTransform writes values straight into
// the output; HandleBatch sees the whole batch.
//
// Register the plugin from an init function: a reactor's _initialize runs
// init functions, never main. The sandbox gives a guest no files, network
// or environment, a fake clock and fixed random numbers unless the worker
// grants more; what it prints to stdout or stderr reaches the worker's log
// at most, and the end of it is quoted in the error of a batch that traps.
//
// The kit's logic also builds for the host (for tests); only the exports
// are wasip1-specific.
package pdk
