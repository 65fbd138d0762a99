// Package plugins holds the example WebAssembly plugins, written in Go with
// package pdk, each a main package in its own directory:
//
//	upper-wasm/         ASCII upper-case, byte for byte the native upper's output
//	identity-wasm/      every record unchanged
//	json-extract-wasm/  one field of JSON records (config field=a.b.c)
//
// and one in Rust, with the Rust kit (pdk/rust):
//
//	upper-rust/         upper-wasm again: build.sh (plain rustc, wasm32-wasi) writes upper.wasm
//
// The same upper-wasm written in C against docs/abi.md is the module the
// system pushes: package plugin/builtin/twins. Build the Go plugins with the
// standard Go toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false -o upper.wasm ./examples/plugins/upper-wasm
//
// UpperGoWASM (the Go build) is committed; go generate rebuilds it, and a
// test fails when it is stale. The C build (twins.Upper) does the work of
// the native upper at a fraction of the Go build's cost per record
// (BENCHMARKS.md, section wasm).
package plugins

import _ "embed"

//go:generate env GOOS=wasip1 GOARCH=wasm GOFLAGS= go build -buildmode=c-shared -trimpath -buildvcs=false -o upper-wasm/upper.wasm ./upper-wasm
//go:generate sh upper-rust/build.sh
//go:generate env GOOS=wasip1 GOARCH=wasm GOFLAGS= go build -buildmode=c-shared -trimpath -buildvcs=false -o kv-lookup-wasm/kv-lookup.wasm ./kv-lookup-wasm

// UpperGoWASM is the same plugin built from Go with package pdk
// (upper-wasm/upper.wasm): an example, pushed nowhere by default. It gives
// the same output as twins.Upper at several times its cost per record. Do
// not modify it.
//
//go:embed upper-wasm/upper.wasm
var UpperGoWASM []byte

// UpperRustWASM is the same plugin built from Rust with the Rust kit
// (upper-rust/upper.wasm, made by upper-rust/build.sh): an example, pushed
// nowhere by default, giving the same output as twins.Upper. A test
// rebuilds it when rustc with the wasm32-wasi standard library is
// installed, and fails when it is stale. Do not modify it.
//
//go:embed upper-rust/upper.wasm
var UpperRustWASM []byte

// KVLookupWASM is the enricher of the plugin kits built from Go
// (kv-lookup-wasm/kv-lookup.wasm): each record's value is a key, its
// result that key's value in the KV bucket the job's config names
// (bucket=NAME), or a per-record error when the key has none. It imports
// kv_get, so it loads only under a policy granting kv:BUCKET. go generate
// rebuilds it, and a test fails when it is stale.
//
//go:embed kv-lookup-wasm/kv-lookup.wasm
var KVLookupWASM []byte
