package worker

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/pool"
)

// metrics are the worker's Prometheus metrics (docs/operations.md). They
// carry a constant label worker=<id>, so several workers can share one
// registry (the dev stack runs them in one process).
type metrics struct {
	records          *prometheus.CounterVec
	batches          *prometheus.CounterVec
	batchSeconds     *prometheus.HistogramVec
	batchRecords     prometheus.Histogram
	redeliveries     prometheus.Counter
	naks             *prometheus.CounterVec
	deadLettered     prometheus.Counter
	splits           prometheus.Counter
	duplicateResults prometheus.Counter
	fetchErrors      prometheus.Counter
	storeRetries     prometheus.Counter
	heartbeats       prometheus.Counter
	leaseRenewals    prometheus.Counter
	queueWait        *prometheus.HistogramVec
	// compressedBatches and compressedResults count batches received and
	// result messages published compressed (batch.FlagS2).
	compressedBatches, compressedResults prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, id string, p *pool.Pool, inFlight func() float64) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dataflare_records_processed_total", Help: "Records processed, by plugin and outcome (succeeded, failed, dropped)."},
			[]string{"plugin", "outcome"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dataflare_batches_processed_total", Help: "Batches whose results were stored, by plugin."}, []string{"plugin"}),
		batchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dataflare_batch_duration_seconds", Help: "Time to run a batch through its plugin.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"plugin"}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dataflare_batch_records", Help: "Records per batch run.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_redeliveries_total", Help: "Batches received that had been delivered before."}),
		naks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dataflare_batches_released_total", Help: "Batches released for a retry (nak) or removed, by reason."}, []string{"reason"}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_dead_lettered_total", Help: "Records isolated as poison and dead-lettered."}),
		splits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_poison_splits_total", Help: "Batches split unrun after failing every one of MaxDeliver deliveries in which they ran alone."}),
		duplicateResults: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_duplicate_results_total", Help: "Results JetStream already had (a redelivered batch done twice)."}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_fetch_errors_total", Help: "Failed pull requests (server away)."}),
		storeRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_result_store_retries_total", Help: "Publications of results JetStream could not store, retried with the batch's lease kept."}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_heartbeats_sent_total", Help: "Heartbeats sent."}),
		leaseRenewals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_lease_renewals_total", Help: "In-progress acknowledgements sent to keep running batches from being redelivered."}),
		compressedBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_compressed_batches_total", Help: "Batches received compressed (S2), decompressed into the worker's pool."}),
		compressedResults: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_compressed_results_total", Help: "Result messages published compressed (S2)."}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dataflare_queue_wait_seconds", Help: "Time a batch waited in its queue before a worker started it, by owner and priority.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}, []string{"owner", "priority"}),
	}
	if reg != nil {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"worker": id}, reg)
		reg.MustRegister(m.records, m.batches, m.batchSeconds, m.batchRecords, m.redeliveries, m.naks,
			m.deadLettered, m.splits, m.duplicateResults, m.fetchErrors, m.storeRetries, m.heartbeats, m.leaseRenewals, m.queueWait, newPoolCollector(p),
			m.compressedBatches, m.compressedResults,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "dataflare_batches_in_flight", Help: "Batches running now."}, inFlight))
	}
	return m
}

// observe counts a batch whose results were stored.
func (m *metrics) observe(name string, res *plugin.BatchResult) {
	var ok, failed, dropped int
	for i := range res.Results {
		switch r := &res.Results[i]; {
		case r.Err != nil:
			failed++
		case r.Dropped:
			dropped++
		default:
			ok++
		}
	}
	m.records.WithLabelValues(name, "succeeded").Add(float64(ok))
	m.records.WithLabelValues(name, "failed").Add(float64(failed))
	m.records.WithLabelValues(name, "dropped").Add(float64(dropped))
	m.batches.WithLabelValues(name).Inc()
	m.batchSeconds.WithLabelValues(name).Observe(res.Duration.Seconds())
	m.batchRecords.Observe(float64(len(res.Results)))
}

// poolCollector exports the memory pool's statistics at scrape time.
type poolCollector struct {
	p                                   *pool.Pool
	hits, misses, inUse, idle, pressure *prometheus.Desc
}

func newPoolCollector(p *pool.Pool) *poolCollector {
	return &poolCollector{
		p:        p,
		hits:     prometheus.NewDesc("dataflare_pool_hits_total", "Pool Gets served by an idle buffer.", []string{"tier"}, nil),
		misses:   prometheus.NewDesc("dataflare_pool_misses_total", "Pool Gets that allocated.", []string{"tier"}, nil),
		inUse:    prometheus.NewDesc("dataflare_pool_in_use_bytes", "Bytes of pool buffers held now.", []string{"tier"}, nil),
		idle:     prometheus.NewDesc("dataflare_pool_idle_bytes", "Bytes of idle pool buffers.", []string{"tier"}, nil),
		pressure: prometheus.NewDesc("dataflare_pool_pressure", "Pool bytes in use over its budget (0..1).", nil, nil),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.hits
	ch <- c.misses
	ch <- c.inUse
	ch <- c.idle
	ch <- c.pressure
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Stats()
	for _, t := range s.Tiers {
		ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(t.Hits), t.Tier)
		ch <- prometheus.MustNewConstMetric(c.misses, prometheus.CounterValue, float64(t.Misses), t.Tier)
		ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(t.InUseBytes), t.Tier)
		ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(t.IdleBytes), t.Tier)
	}
	ch <- prometheus.MustNewConstMetric(c.pressure, prometheus.GaugeValue, s.Pressure)
}
