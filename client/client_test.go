package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/internal/natstest"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/local/localtest"
	"github.com/dataflare/dataflare/plugin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.LeakOptions()...) }

func records(n, size int) []plugin.Record {
	recs := make([]plugin.Record, n)
	for i := range recs {
		v := fmt.Appendf(nil, "record-%d-", i)
		for len(v) < size {
			v = append(v, 'x')
		}
		recs[i] = plugin.Record{Value: v}
	}
	return recs
}

func TestSubmitUpperInOrder(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 2})
	c := f.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 20000
	recs := records(n, 100)
	job, err := c.Submit(ctx, "upper", client.Records(recs), client.WithBatchSize(500))
	if err != nil {
		t.Fatal(err)
	}
	var i uint64
	for out, err := range job.Results() {
		if err != nil {
			t.Fatalf("after %d results: %v", i, err)
		}
		if out.Index != i {
			t.Fatalf("result %d has index %d", i, out.Index)
		}
		if want := bytes.ToUpper(recs[i].Value); !bytes.Equal(out.Value, want) {
			t.Fatalf("result %d = %q, want %q", i, out.Value, want)
		}
		i++
	}
	if i != n {
		t.Fatalf("got %d results, want %d", i, n)
	}
	p := job.Progress()
	if p.Results != n || p.Succeeded != n || p.Submitted != n {
		t.Errorf("progress = %+v", p)
	}
}

func TestProcessBatchPerRecordErrors(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	c := f.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := []plugin.Record{{Value: []byte("ok")}, {Value: []byte("bad one")}, {Value: []byte("fine")}}
	res, err := c.ProcessBatch(ctx, "fail", plugin.Config{"match": "bad"}, recs)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(res.Results); got != 3 {
		t.Fatalf("got %d results", got)
	}
	if res.Failed() != 1 || res.Results[1].Err == nil || res.Results[0].Err != nil || res.Results[2].Err != nil {
		t.Errorf("results = %+v", res.Results)
	}
	if !strings.Contains(res.Results[1].Err.Error(), "bad") {
		t.Errorf("error %q does not say why", res.Results[1].Err)
	}
}

func TestUnknownPlugin(t *testing.T) {
	f := localtest.Start(t, local.Config{Workers: 1})
	c := f.Client()
	_, err := c.Submit(context.Background(), "nope", client.Records(records(1, 10)))
	if !errors.Is(err, client.ErrUnknownPlugin) || !errors.Is(err, plugin.ErrUnknownPlugin) {
		t.Fatalf("err = %v, want ErrUnknownPlugin", err)
	}
}

func TestNoWorkers(t *testing.T) {
	f := localtest.Start(t, local.Config{})
	c := f.Client()
	_, err := c.Submit(context.Background(), "upper", client.Records(records(1, 10)))
	if !errors.Is(err, client.ErrNoWorkers) {
		t.Fatalf("err = %v, want ErrNoWorkers", err)
	}
}
