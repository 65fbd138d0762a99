//go:build race

package bench

// raceEnabled: the race detector slows compiling a module tenfold.
const raceEnabled = true
