//go:build race

package wasm

// raceEnabled: the race detector slows guest stack growth by an order of
// magnitude.
const raceEnabled = true
