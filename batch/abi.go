package batch

// ABIVersion is the version of the WebAssembly batch ABI (docs/abi.md):
// what a plugin's df_abi_version export returns. The guest kit (package
// pdk) exports it and the host runtime (package wasm) refuses a module that
// returns anything else. It is independent of Version, the wire format's
// own version, though the ABI carries batches and results in that format.
const ABIVersion = 1
