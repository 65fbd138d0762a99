package coordinator

import "github.com/prometheus/client_golang/prometheus"

// metrics are the coordinator's Prometheus metrics (docs/operations.md).
type metrics struct {
	jobs          prometheus.Counter
	sealedBatches prometheus.Counter
	sealedRecords prometheus.Counter
	heartbeats    prometheus.Counter
	badHeartbeats prometheus.Counter
	refused       prometheus.Counter
	badRequests   prometheus.Counter
	// pipelines
	pipelineMessages *prometheus.CounterVec
	pipelineLag      *prometheus.GaugeVec
	workers          *prometheus.GaugeVec
	batchSize        *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		jobs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_jobs_total", Help: "Jobs created."}),
		sealedBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_sealed_batches_total", Help: "Batches of the jobs sealed through this coordinator."}),
		sealedRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_sealed_records_total", Help: "Records of the jobs sealed through this coordinator."}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_heartbeats_total", Help: "Worker heartbeats received."}),
		badHeartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_bad_heartbeats_total", Help: "Malformed heartbeats ignored."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_requests_refused_total", Help: "Requests answered busy because their owner asked too much (rate or queue)."}),
		badRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dataflare_coordinator_requests_ignored_total", Help: "Messages on request subjects without an inbox to answer: ignored unread."}),
		pipelineMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dataflare_pipeline_messages_total", Help: "Source messages a pipeline finished, by outcome (published, dropped, failed: dead-lettered)."},
			[]string{"pipeline", "outcome"}),
		pipelineLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dataflare_pipeline_lag_messages", Help: "Source messages of a pipeline not yet in its sink (pending and in flight)."},
			[]string{"pipeline"}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dataflare_workers", Help: "Workers by health, as this coordinator sees them."}, []string{"health"}),
		batchSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dataflare_batch_size", Help: "Batch size the sizer chose, by plugin."}, []string{"plugin"}),
	}
	if reg != nil {
		reg.MustRegister(m.jobs, m.sealedBatches, m.sealedRecords,
			m.heartbeats, m.badHeartbeats, m.refused, m.badRequests, m.pipelineMessages, m.pipelineLag, m.workers, m.batchSize)
	}
	return m
}
