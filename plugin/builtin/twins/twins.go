// Package twins holds the WebAssembly twins of the built-in plugins:
// modules that give byte for byte the native plugin's output, so that the
// same work can run natively or sandboxed and the two can be compared. The
// dataflare command pushes them to the plugin store (demo, dev) and the
// benchmark runs them beside their native twins.
//
//	upper-c/   Upper ("upper-wasm"): ASCII upper-case, written in C against docs/abi.md
//
// The modules are committed, so that nothing needs a WebAssembly toolchain;
// go generate rebuilds them with clang (wasm32 and wasm-ld), and a test
// fails when the committed one is stale.
package twins

import _ "embed"

//go:generate sh upper-c/build.sh

// Upper is the WebAssembly twin of the native upper: upper-c/upper.wasm,
// built from upper-c/upper.c. Do not modify it.
//
//go:embed upper-c/upper.wasm
var Upper []byte

// UpperName is the name Upper is pushed under.
const UpperName = "upper-wasm"
