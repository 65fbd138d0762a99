//go:build !unix

package plugins_test

import "time"

// cpuTime returns 0: there is no portable process CPU clock.
func cpuTime() time.Duration { return 0 }
