package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

// FailoverConfig describes a failover run: a job on two workers, one of
// which dies midway. Zero fields take their defaults.
type FailoverConfig struct {
	// DelayMillis is the delay plugin's ms per record. Default 1.
	DelayMillis int
	// Parallel is how many batches each worker runs at once. Default 2.
	Parallel int
	// Seconds is about how long the job runs on two live workers.
	// Default 6.
	Seconds float64
	// KillAfter is when, into the job, a worker is killed. Default 1.5 s.
	KillAfter time.Duration
	// AckWait is the batches' AckWait (proto.Topology): how long a batch
	// may go without a sign of life before it is delivered again. Default
	// proto.DefaultAckWait.
	AckWait time.Duration
	// Rounds is how many kills are measured. Default 3.
	Rounds int
	// Spawner starts the workers. Default InProcess.
	Spawner Spawner
	// Log receives progress lines (nil: none).
	Log *slog.Logger
}

// FailoverReport is what Failover measured.
type FailoverReport struct {
	Date        string  `json:"date"`
	Machine     Machine `json:"machine"`
	Workers     string  `json:"workers"`
	DelayMillis int     `json:"delay_ms"`
	Parallel    int     `json:"parallel"`
	Records     int     `json:"records"`
	AckWaitMs   float64 `json:"ack_wait_ms"`
	// StallMs is the median over rounds of the longest time, after the
	// kill, during which the client got no new result: the dead worker's
	// batches wait out their AckWait, then a survivor runs them.
	StallMs float64 `json:"stall_ms"`
	// LeasePerSec is the lease traffic of the jobs without a kill: the
	// in-progress acknowledgements ("+WPI" on $JS.ACK.>) the workers sent
	// per second, counted on the wire, median over rounds.
	LeasePerSec float64 `json:"lease_msgs_per_s"`
	// LeasePerBatch is the same per batch acknowledged.
	LeasePerBatch float64 `json:"lease_msgs_per_batch"`
	// ExtraMs is the median of how much longer the job took than the same
	// job without a kill (which also loses half the workers' capacity
	// for the rest of the job).
	ExtraMs float64       `json:"extra_ms"`
	Runs    []FailoverRun `json:"runs"`
}

// FailoverRun is one kill.
type FailoverRun struct {
	BaselineMs float64 `json:"baseline_ms"`
	// Leases and Acks are the in-progress and final acknowledgements of
	// the batches of the job without a kill.
	Leases     int     `json:"leases"`
	Acks       int     `json:"acks"`
	JobMs      float64 `json:"job_ms"`
	KilledAtMs float64 `json:"killed_at_ms"`
	StallMs    float64 `json:"stall_ms"`
	ExtraMs    float64 `json:"extra_ms"`
}

// Failover runs, each round, the same job twice on two workers: once as
// is, once with one worker killed (Spawner's Kill: no ack, no goodbye)
// KillAfter into it, then replaces the dead worker. Every record must
// still get its result. The error wraps ErrInvalidConfig for a bad cfg, or
// is the first failure.
func Failover(ctx context.Context, cfg FailoverConfig) (*FailoverReport, error) {
	if cfg.DelayMillis == 0 {
		cfg.DelayMillis = 1
	}
	if cfg.Parallel == 0 {
		cfg.Parallel = 2
	}
	if cfg.Seconds == 0 {
		cfg.Seconds = 6
	}
	if cfg.KillAfter == 0 {
		cfg.KillAfter = 1500 * time.Millisecond
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = proto.DefaultAckWait
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 3
	}
	if cfg.Spawner == nil {
		cfg.Spawner = InProcess{}
	}
	if cfg.Log == nil {
		cfg.Log = discard
	}
	if cfg.DelayMillis < 1 || cfg.Parallel < 1 || cfg.Seconds <= 0 || cfg.KillAfter < 0 || cfg.Rounds < 1 || cfg.AckWait < 100*time.Millisecond {
		return nil, fmt.Errorf("%w: failover %+v", ErrInvalidConfig, cfg)
	}
	records := int(2 * float64(cfg.Parallel) * 1000 / float64(cfg.DelayMillis) * cfg.Seconds)
	bcfg, err := Config{Records: records, Plugin: builtin.DelayName, Modes: []string{ModeFleetNative}, Log: cfg.Log,
		PluginConfig: plugin.Config{"ms": strconv.Itoa(cfg.DelayMillis)}}.withDefaults()
	if err != nil {
		return nil, err
	}
	bcfg.topology.AckWait = cfg.AckWait
	e, err := setupStack(ctx, bcfg, 0, defaultWindow)
	if err != nil {
		return nil, err
	}
	defer e.close()
	rep := &FailoverReport{Date: e.start.UTC().Format(time.RFC3339), Machine: machine(), Workers: cfg.Spawner.Kind(),
		DelayMillis: cfg.DelayMillis, Parallel: cfg.Parallel, Records: records,
		AckWaitMs: float64(cfg.AckWait) / float64(time.Millisecond)}

	var live []Worker
	defer func() {
		for _, w := range live {
			w.Stop()
		}
	}()
	spawned := 0
	ensure := func() error {
		for len(live) < 2 {
			spawned++
			w, err := cfg.Spawner.Start(ctx, e.st.URL, WorkerSpec{ID: fmt.Sprintf("bench-fo-%d", spawned), Parallel: cfg.Parallel})
			if err != nil {
				return err
			}
			live = append(live, w)
		}
		return waitWorkers(ctx, e.cl, 2, 30*time.Second)
	}
	if err := ensure(); err != nil {
		return nil, err
	}
	// The sizer learns the plugin's cost first.
	if _, _, err := e.fleetRound(ctx, builtin.DelayName, records/4, 0, nil); err != nil {
		return nil, err
	}
	var stalls, extras, perSec, perBatch []float64
	for round := range cfg.Rounds {
		acks, err := countAcks(e.nc)
		if err != nil {
			return nil, err
		}
		base, _, err := e.fleetRound(ctx, builtin.DelayName, records, 0, nil)
		leases, done := acks.stop()
		if err != nil {
			return nil, err
		}
		run, err := e.killRun(ctx, records, cfg.KillAfter, live[0])
		if err != nil {
			return nil, err
		}
		live = live[1:]
		run.BaselineMs = ms(base)
		run.Leases, run.Acks = leases, done
		perSec = append(perSec, round3(float64(leases)/base.Seconds()))
		if done > 0 {
			perBatch = append(perBatch, round3(float64(leases)/float64(done)))
		}
		run.ExtraMs = round3(run.JobMs - run.BaselineMs)
		rep.Runs = append(rep.Runs, run)
		stalls, extras = append(stalls, run.StallMs), append(extras, run.ExtraMs)
		cfg.Log.Info("failover", "round", round+1, "stall_ms", run.StallMs, "extra_ms", run.ExtraMs)
		// The dead worker's last heartbeat ages out of the fleet view.
		if err := waitWorkers(ctx, e.cl, 1, time.Minute); err != nil {
			return nil, err
		}
		if err := ensure(); err != nil {
			return nil, err
		}
	}
	rep.StallMs, rep.ExtraMs = round3(median(stalls)), round3(median(extras))
	rep.LeasePerSec = round3(median(perSec))
	if len(perBatch) > 0 {
		rep.LeasePerBatch = round3(median(perBatch))
	}
	return rep, nil
}

// killRun runs a job of n delay records and kills victim after killAfter.
func (e *env) killRun(ctx context.Context, n int, killAfter time.Duration, victim Worker) (FailoverRun, error) {
	start := time.Now()
	src := func(yield func(plugin.Record, error) bool) {
		for i := range n {
			if !yield(plugin.Record{Value: e.in.value(i)}, nil) {
				return
			}
		}
	}
	job, err := e.cl.Submit(ctx, builtin.DelayName, src, client.WithConfig(e.cfg.PluginConfig))
	if err != nil {
		return FailoverRun{}, fmt.Errorf("bench: submit: %w", err)
	}
	killed := make(chan time.Duration, 1)
	timer := time.AfterFunc(killAfter, func() {
		at := time.Since(start)
		victim.Kill()
		killed <- at
	})
	defer timer.Stop()
	var (
		run      FailoverRun
		killedAt = time.Duration(-1)
		last     time.Duration
		got      int
	)
	for o, err := range job.Results() {
		if err != nil {
			return run, fmt.Errorf("bench: failover job: %w", err)
		}
		if o.Err != nil {
			return run, fmt.Errorf("bench: failover job: record %d: %w", o.Index, o.Err)
		}
		now := time.Since(start)
		if killedAt < 0 {
			select {
			case killedAt = <-killed:
				last = max(last, killedAt)
			default:
			}
		}
		if killedAt >= 0 {
			run.StallMs = max(run.StallMs, ms(now-last))
		}
		last = now
		got++
	}
	run.JobMs = ms(time.Since(start))
	if killedAt < 0 {
		// The job ended before the kill: nothing failed over.
		<-killed
		return run, fmt.Errorf("%w: the job ended after %v ms, before the kill at %v: give it more Seconds",
			ErrInvalidConfig, run.JobMs, killAfter)
	}
	run.KilledAtMs = ms(killedAt)
	if got != n {
		return run, fmt.Errorf("bench: failover job: %d results for %d records", got, n)
	}
	return run, nil
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

// ackCounter counts the acknowledgements of batches on the wire: every
// worker publishes them to the reply subjects JetStream gave ($JS.ACK.>),
// where any subscriber sees them.
type ackCounter struct {
	sub            *nats.Subscription
	leases, others atomic.Int64
}

// countAcks starts counting acknowledgements on nc.
func countAcks(nc *nats.Conn) (*ackCounter, error) {
	c := &ackCounter{}
	sub, err := nc.Subscribe("$JS.ACK.>", func(m *nats.Msg) {
		if !strings.Contains(m.Subject, "."+proto.StreamBatches) {
			return // a result reader's, or another stream's
		}
		if bytes.HasPrefix(m.Data, []byte("+WPI")) {
			c.leases.Add(1)
		} else {
			c.others.Add(1)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bench: counting acknowledgements: %w", err)
	}
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("bench: counting acknowledgements: %w", err)
	}
	c.sub = sub
	return c, nil
}

// stop ends the count and returns the in-progress acknowledgements and
// the others. A job's last acknowledgement may follow its last result by
// a moment: the count may miss it.
func (c *ackCounter) stop() (leases, others int) {
	_ = c.sub.Unsubscribe()
	return int(c.leases.Load()), int(c.others.Load())
}
