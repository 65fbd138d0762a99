//go:build unix

package wasm

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user and system) this process has used:
// on a shared machine it measures our work, where the wall clock also
// measures the neighbours'.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
