// Package hist is a small mergeable latency histogram.
//
// Buckets are log-linear over nanoseconds: values below 16 ns have a bucket
// each, and every power of two above is cut into 16 equal sub-buckets, up
// to 2^43 ns (about 2.4 hours; longer values land in the top bucket). A
// quantile is read as the middle of its bucket, so it is within 1/32
// (3.2 %) of the true value; count, sum, mean, min and max are exact.
// Two histograms merge exactly (bucket by bucket), which is how a fleet's
// per-worker histograms are combined.
//
//	var h hist.Histogram
//	h.Record(3 * time.Millisecond)   // no allocation
//	h.RecordN(40*time.Microsecond, 100)
//	p99 := h.Quantile(0.99)
//	other.Merge(&h)
//	b, _ := json.Marshal(&h)   // sparse: only non-empty buckets
//
// A Histogram is a plain value (about 5 KiB, no pointers): copy it to take a
// snapshot. It is not safe for concurrent use; guard it with a lock.
package hist
