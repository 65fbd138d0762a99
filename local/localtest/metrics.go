package localtest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Counter returns the sum of the series of counter name in reg (0 when it
// has none), failing tb when reg cannot be gathered.
func Counter(tb testing.TB, reg prometheus.Gatherer, name string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
