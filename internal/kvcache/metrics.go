package kvcache

import "github.com/prometheus/client_golang/prometheus"

var (
	descHits      = prometheus.NewDesc("dataflare_kv_cache_hits_total", "KV look-ups of WebAssembly modules answered from the worker's cache.", nil, nil)
	descMisses    = prometheus.NewDesc("dataflare_kv_cache_misses_total", "KV look-ups of WebAssembly modules that asked NATS.", nil, nil)
	descEntries   = prometheus.NewDesc("dataflare_kv_cache_entries", "Keys in the worker's KV cache, with or without a value.", nil, nil)
	descBytes     = prometheus.NewDesc("dataflare_kv_cache_bytes", "Bytes of the keys and values in the worker's KV cache.", nil, nil)
	descEvictions = prometheus.NewDesc("dataflare_kv_cache_evictions_total", "Entries evicted from the worker's KV cache to stay under its bound.", nil, nil)
	descUpdates   = prometheus.NewDesc("dataflare_kv_cache_updates_total", "Updates applied to the worker's KV cache from the buckets' watches.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Cache) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHits, descMisses, descEntries, descBytes, descEvictions, descUpdates} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the cache's Stats.
func (c *Cache) Collect(ch chan<- prometheus.Metric) {
	s := c.Stats()
	ch <- prometheus.MustNewConstMetric(descHits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(descMisses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(s.Entries))
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(s.Bytes))
	ch <- prometheus.MustNewConstMetric(descEvictions, prometheus.CounterValue, float64(s.Evictions))
	ch <- prometheus.MustNewConstMetric(descUpdates, prometheus.CounterValue, float64(s.Updates))
}
