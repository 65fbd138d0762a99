package bench

import (
	"time"

	"github.com/dataflare/dataflare/internal/cputime"
)

// cpuTime returns the CPU time the process has used (see package cputime).
func cpuTime() time.Duration { return cputime.Process() }
