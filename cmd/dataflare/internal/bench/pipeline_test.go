package bench

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/plugin/builtin"
)

func TestPipeline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const records, rounds = 2000, 2
	rep, err := Pipeline(ctx, PipelineConfig{Records: records, RecordSize: 256, Rounds: rounds, Warmup: time.Millisecond,
		LagTime: time.Second})
	if err != nil {
		t.Fatalf("Pipeline: %v", err)
	}
	doc := jsonDoc(t, rep)
	pl := object(t, doc, "pipeline")
	// The contract's keys, by their JSON names.
	for _, k := range []string{"records_per_sec", "raw_records_per_sec", "vs_raw", "vs_raw_cpu", "lag_p50_ms", "lag_p99_ms",
		"lag_max_ms", "lag_rate", "lag_target_rate", "lag_samples", "records", "record_size", "batch_size", "first_result_ms",
		"cpu_us_per_record", "raw_cpu_us_per_record", "mb_per_sec", "checked_messages",
		"raw_lag_rate", "raw_lag_p50_ms", "raw_lag_p99_ms", "raw_lag_max_ms", "raw_lag_samples"} {
		if v, ok := pl[k].(float64); !ok || v <= 0 {
			t.Errorf("pipeline.%s = %v, want a positive number", k, pl[k])
		}
	}
	// A pipeline leg per round, each between two raw legs.
	for k, legs := range map[string]int{"rounds_records_per_sec": rounds, "raw_rounds_records_per_sec": rounds + 1} {
		if got, ok := pl[k].([]any); !ok || len(got) != legs {
			t.Errorf("pipeline.%s = %v, want %d legs", k, pl[k], legs)
		}
	}
	f := rep.Pipeline
	if len(f.RoundsPerSec) == rounds && len(f.RawRoundsPerSec) == rounds+1 {
		// vs_raw holds each pipeline leg to the raw legs around it.
		var ratios []float64
		for r, rate := range f.RoundsPerSec {
			ratios = append(ratios, rate/math.Sqrt(f.RawRoundsPerSec[r]*f.RawRoundsPerSec[r+1]))
		}
		if want := median(ratios); math.Abs(f.VsRaw-want) > 0.002 {
			t.Errorf("vs_raw %v, want %.3f from legs %v and raw's %v", f.VsRaw, want, f.RoundsPerSec, f.RawRoundsPerSec)
		}
	}
	if f.Records != records || f.RecordSize != 256 || rep.Rounds != rounds {
		t.Errorf("records %d of %d B, %d rounds: want %d of 256 B, %d rounds", f.Records, f.RecordSize, rep.Rounds, records, rounds)
	}
	// Every sink held exactly one message per source message, in order:
	// every leg of both sides, and every message of both lag figures.
	if got, want := f.Checked, (2*rounds+1)*records+f.LagSamples+f.RawLagSamples; got != want {
		t.Errorf("checked %d sink messages, want %d", got, want)
	}
	if !(f.LagP50Ms <= f.LagP99Ms && f.LagP99Ms <= f.LagMaxMs) {
		t.Errorf("lag p50 %v, p99 %v, max %v ms: want them in order", f.LagP50Ms, f.LagP99Ms, f.LagMaxMs)
	}
	if !(f.RawLagP50Ms <= f.RawLagP99Ms && f.RawLagP99Ms <= f.RawLagMaxMs) {
		t.Errorf("raw lag p50 %v, p99 %v, max %v ms: want them in order", f.RawLagP50Ms, f.RawLagP99Ms, f.RawLagMaxMs)
	}
	// Raw's lag is measured at the rate asked of the pipeline's, for as
	// long: about as many messages.
	if lo, hi := f.LagSamples*2/3, f.LagSamples*3/2; f.RawLagSamples < lo || f.RawLagSamples > hi {
		t.Errorf("raw lag over %d messages, the pipeline's over %d: want about as many", f.RawLagSamples, f.LagSamples)
	}
	if got, want := f.LagTargetRate, f.RecordsPerSec/2; got < want-0.01 || got > want+0.01 {
		t.Errorf("lag target rate %v, want half the pipeline's %v", got, f.RecordsPerSec)
	}
	if st := f.Status; st.State != "running" || st.Processed < uint64(lagPrime+f.LagSamples) {
		t.Errorf("status %+v: want running, at least %d processed", st, lagPrime+f.LagSamples)
	}
}

func TestPipelineConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  PipelineConfig
	}{
		{"negative records", PipelineConfig{Records: -1}},
		{"record size", PipelineConfig{RecordSize: MaxRecordSize + 1}},
		{"failing plugin", PipelineConfig{Plugin: builtin.FailName}},
		{"unknown plugin", PipelineConfig{Plugin: "nope"}},
		{"negative lag time", PipelineConfig{LagTime: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Pipeline(context.Background(), tc.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("got %v, want an error wrapping ErrInvalidConfig", err)
			}
		})
	}
}

// TestPipelineCheckSink holds the sink check to its word: exactly one message per
// source message, in source order, with the step's output.
func TestPipelineCheckSink(t *testing.T) {
	s := natstest.RunServer(t)
	js, err := jetstream.New(natstest.Connect(t, s.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := &pipeBench{env: &env{js: js, in: makeRecords(5, 16, DataLetters), check: checker(builtin.UpperName)}}
	upper := func(i int) []byte { return bytes.ToUpper(p.in.value(i)) }
	for i, tc := range []struct {
		name string
		seqs []int // the source sequences the sink holds, in order
		want string
		bad  func(i int) []byte // the value of the sink's message of source i
	}{
		{name: "one each, in order", seqs: []int{1, 2, 3, 4, 5}},
		{name: "a duplicate", seqs: []int{1, 2, 2, 3, 4, 5}, want: "holds 6 messages, want 5"},
		{name: "a gap", seqs: []int{1, 2, 4, 5}, want: "holds 4 messages, want 5"},
		{name: "out of order", seqs: []int{1, 3, 2, 4, 5}, want: `message 2 is of source sequence "3"`},
		{name: "a gap and a duplicate", seqs: []int{1, 2, 2, 4, 5}, want: `message 3 is of source sequence "2"`},
		{name: "not the step's output", seqs: []int{1, 2, 3, 4, 5}, want: "wrong value", bad: p.in.value},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, subject := "CHECK_"+strconv.Itoa(i), "check."+strconv.Itoa(i)
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject}}); err != nil {
				t.Fatal(err)
			}
			value := upper
			if tc.bad != nil {
				value = tc.bad
			}
			for _, seq := range tc.seqs {
				m := &nats.Msg{Subject: subject, Data: value(seq - 1), Header: nats.Header{}}
				m.Header.Set(coordinator.HeaderSourceSeq, strconv.Itoa(seq))
				if _, err := js.PublishMsg(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			err := p.checkSink(ctx, stream, 5, 1)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
