package coordinator_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/coordinator"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/internal/proto"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/sizer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.LeakOptions()...) }

func TestNewValidates(t *testing.T) {
	s := natstest.RunServer(t)
	nc := natstest.Connect(t, s.ClientURL())
	tests := []struct {
		name string
		cfg  coordinator.Config
	}{
		{"heartbeat too short", coordinator.Config{Heartbeat: time.Millisecond}},
		{"max batch bytes too small", coordinator.Config{MaxBatchBytes: 100}},
		{"max batch bytes over max payload", coordinator.Config{MaxBatchBytes: 1 << 30}},
		{"bad topology", coordinator.Config{Topology: proto.Topology{MaxDeliver: 1}}},
		{"bad sizer", coordinator.Config{Sizer: sizer.Config{Min: 10, Max: 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := coordinator.New(nc, tt.cfg); !errors.Is(err, coordinator.ErrInvalidConfig) {
				t.Errorf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := coordinator.New(nil, coordinator.Config{}); !errors.Is(err, coordinator.ErrInvalidConfig) {
		t.Errorf("nil connection: err = %v", err)
	}
}

// call sends a request and decodes the reply.
func call[T any](t *testing.T, nc *nats.Conn, subject string, req any) (*T, error) {
	t.Helper()
	var data []byte
	switch r := req.(type) {
	case nil:
	case []byte:
		data = r
	default:
		data, _ = json.Marshal(r)
	}
	m, err := nc.Request(subject, data, 5*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	return proto.DecodeReply[T](m.Data)
}

func code(err error) plugin.Code {
	var pe *proto.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return 255
}

func TestJobLifecycle(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	nc := f.Connect()
	if _, err := call[proto.Job](t, nc, proto.JobCreateSubject(proto.DefaultOwner), proto.JobCreate{Plugin: "nope"}); code(err) != plugin.CodeUnknownPlugin {
		t.Errorf("unknown plugin: err = %v", err)
	}
	if _, err := call[proto.Job](t, nc, proto.JobCreateSubject(proto.DefaultOwner), proto.JobCreate{Plugin: "bad.name"}); code(err) != plugin.CodeInvalidInput {
		t.Errorf("bad name: err = %v", err)
	}
	if _, err := call[proto.Job](t, nc, proto.JobCreateSubject(proto.DefaultOwner), []byte("{")); code(err) != plugin.CodeInvalidInput {
		t.Errorf("malformed: err = %v", err)
	}
	job, err := call[proto.Job](t, nc, proto.JobCreateSubject(proto.DefaultOwner), proto.JobCreate{Plugin: "upper", Config: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if job.State != proto.JobOpen || job.Digest != "" || job.BatchSize < 1 || job.MaxBatchBytes < 4096 {
		t.Fatalf("created job = %+v", job)
	}
	got, err := call[proto.Job](t, nc, proto.JobSubject("get", job.ID), nil)
	if err != nil || got.Plugin != "upper" || got.Config["a"] != "b" {
		t.Fatalf("get = %+v, %v", got, err)
	}
	seal := proto.JobSeal{Batches: 0, Records: 0}
	for range 2 { // a retried seal is fine
		if got, err = call[proto.Job](t, nc, proto.JobSubject("seal", job.ID), seal); err != nil || got.State != proto.JobSealed {
			t.Fatalf("seal = %+v, %v", got, err)
		}
	}
	if _, err := call[proto.Job](t, nc, proto.JobSubject("seal", job.ID), proto.JobSeal{Batches: 9}); code(err) != plugin.CodeJobClosed {
		t.Errorf("seal with other totals: err = %v", err)
	}
	if got, err = call[proto.Job](t, nc, proto.JobSubject("done", job.ID), proto.JobFinish{}); err != nil || got.State != proto.JobDone {
		t.Fatalf("done = %+v, %v", got, err)
	}
	if _, err := call[proto.Job](t, nc, proto.JobSubject("cancel", job.ID), struct{}{}); code(err) != plugin.CodeJobClosed {
		t.Errorf("cancel a done job: err = %v", err)
	}
	if _, err := call[proto.Job](t, nc, proto.JobSubject("get", "anon.nosuchjob"), nil); code(err) != plugin.CodeJobNotFound {
		t.Errorf("get unknown: err = %v", err)
	}
	if _, err := call[proto.Job](t, nc, proto.JobSubject("frobnicate", job.ID), nil); code(err) != plugin.CodeInvalidInput {
		t.Errorf("unknown verb: err = %v", err)
	}
}
