package coordinator

import "github.com/prometheus/client_golang/prometheus"

// metrics are the coordinator's Prometheus metrics (docs/operations.md).
type metrics struct {
	jobs          prometheus.Counter
	batches       prometheus.Counter
	records       prometheus.Counter
	sealedBatches prometheus.Counter
	sealedRecords prometheus.Counter
	duplicates    prometheus.Counter
	submitErrors  *prometheus.CounterVec
	submitSeconds prometheus.Histogram
	heartbeats    prometheus.Counter
	badHeartbeats prometheus.Counter
	splits        prometheus.Counter
	deadLettered  prometheus.Counter
	workers       *prometheus.GaugeVec
	batchSize     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		jobs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_jobs_total", Help: "Jobs created."}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_batches_total", Help: "Batches accepted on df.submit and published to JetStream (clients that cannot publish to the batch stream)."}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_records_total", Help: "Records in the batches accepted on df.submit."}),
		sealedBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_sealed_batches_total", Help: "Batches of the jobs sealed through this coordinator."}),
		sealedRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_sealed_records_total", Help: "Records of the jobs sealed through this coordinator."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_duplicate_batches_total", Help: "Batches JetStream already had (client retries)."}),
		submitErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dataflare_coordinator_submit_errors_total", Help: "Submissions refused, by error code."}, []string{"code"}),
		submitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dataflare_coordinator_submit_seconds", Help: "Time to accept a batch, JetStream publish included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_heartbeats_total", Help: "Worker heartbeats received."}),
		badHeartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_bad_heartbeats_total", Help: "Malformed heartbeats ignored."}),
		splits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_poison_splits_total", Help: "Batches split after failing every delivery."}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_dead_lettered_total", Help: "Records dead-lettered after failing every delivery."}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dataflare_workers", Help: "Workers by health, as this coordinator sees them."}, []string{"health"}),
		batchSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dataflare_batch_size", Help: "Batch size the sizer chose, by plugin."}, []string{"plugin"}),
	}
	if reg != nil {
		reg.MustRegister(m.jobs, m.batches, m.records, m.sealedBatches, m.sealedRecords, m.duplicates, m.submitErrors, m.submitSeconds,
			m.heartbeats, m.badHeartbeats, m.splits, m.deadLettered, m.workers, m.batchSize)
	}
	return m
}
