// Package plugins holds the example WebAssembly plugins, written in Go with
// package pdk, each a main package in its own directory:
//
//	upper-wasm/         ASCII upper-case, byte for byte the native upper's output
//	identity-wasm/      every record unchanged
//	json-extract-wasm/  one field of JSON records (config field=a.b.c)
//
// Build one with the standard toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false -o upper.wasm ./examples/plugins/upper-wasm
//
// UpperWASM is upper-wasm built that way and committed, so that dataflare
// demo can push it without a Go toolchain; go generate rebuilds it, and a
// test fails when it is stale.
package plugins

import _ "embed"

//go:generate env GOOS=wasip1 GOARCH=wasm GOFLAGS= go build -buildmode=c-shared -trimpath -buildvcs=false -o upper-wasm/upper.wasm ./upper-wasm

// UpperWASM is the upper-wasm module (upper-wasm/upper.wasm). Do not
// modify it.
//
//go:embed upper-wasm/upper.wasm
var UpperWASM []byte

// UpperWASMName is the name the demo pushes UpperWASM under.
const UpperWASMName = "upper-wasm"
