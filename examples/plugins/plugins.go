// Package plugins holds the example WebAssembly plugins and the modules the
// system pushes. upper-c is written in C against docs/abi.md; the others
// are written in Go with package pdk, each a main package in its own
// directory:
//
//	upper-c/            upper-wasm in C: ASCII upper-case, byte for byte the native upper's output
//	upper-wasm/         the same plugin in Go (package pdk), an example
//	identity-wasm/      every record unchanged
//	json-extract-wasm/  one field of JSON records (config field=a.b.c)
//
// Build them with clang (wasm32 and wasm-ld) and the standard Go toolchain:
//
//	sh examples/plugins/upper-c/build.sh
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false -o upper.wasm ./examples/plugins/upper-wasm
//
// UpperWASM (the C build) and UpperGoWASM (the Go build) are committed, so
// that dataflare demo, dev and bench can push UpperWASM without a
// toolchain; go generate rebuilds both, and tests fail when either is
// stale. The C build does the work of the native upper at a fraction of
// the Go build's cost per record (BENCHMARKS.md, section wasm).
package plugins

import _ "embed"

//go:generate sh upper-c/build.sh
//go:generate env GOOS=wasip1 GOARCH=wasm GOFLAGS= go build -buildmode=c-shared -trimpath -buildvcs=false -o upper-wasm/upper.wasm ./upper-wasm

// UpperWASM is the upper-wasm module the system pushes: upper-c/upper.wasm,
// built from upper-c/upper.c. Do not modify it.
//
//go:embed upper-c/upper.wasm
var UpperWASM []byte

// UpperGoWASM is the same plugin built from Go with package pdk
// (upper-wasm/upper.wasm): an example, pushed nowhere by default. It gives
// the same output as UpperWASM at several times its cost per record. Do
// not modify it.
//
//go:embed upper-wasm/upper.wasm
var UpperGoWASM []byte

// UpperWASMName is the name the demo pushes UpperWASM under.
const UpperWASMName = "upper-wasm"
