package coordinator

import "time"

// SetPipelineRounds sets how often the coordinators started after it renew
// their pipelines' leases and look for pipelines to take; the returned
// function restores it. Tests of this package do not run in parallel.
func SetPipelineRounds(d time.Duration) (restore func()) {
	old := pipelineRounds
	pipelineRounds = d
	return func() { pipelineRounds = old }
}

// PipelineConsumer is pipelineConsumer: the name of a pipeline's durable
// consumer on its source stream.
var PipelineConsumer = pipelineConsumer
