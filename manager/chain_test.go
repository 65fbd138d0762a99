package manager_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dataflare/dataflare/manager"
	"github.com/dataflare/dataflare/plugin"
	"github.com/dataflare/dataflare/plugin/builtin"
)

// A chain runs every step over the records the previous one kept: values
// flow from step to step, a dropped record leaves the chain, a failed one
// keeps the error of the step that failed it.
func TestProcessChain(t *testing.T) {
	m := newManager(t, nil)
	for name, p := range builtin.All() {
		if err := m.RegisterBatch(name, p); err != nil {
			t.Fatal(err)
		}
	}
	dropEmpty := recordFunc(func(_ context.Context, _ plugin.Config, r plugin.Record) (plugin.Result, error) {
		if len(r.Value) == 0 {
			return plugin.Drop(), nil
		}
		return plugin.Value(r.Value), nil
	})
	if err := m.Register("drop-empty", dropEmpty); err != nil {
		t.Fatal(err)
	}
	recs := []plugin.Record{{Value: []byte("ok")}, {Value: []byte("")}, {Value: []byte("bad one")}, {Value: []byte("fine")}}
	released := 0
	res, err := m.ProcessChain(context.Background(), []manager.ChainStep{
		{Name: "drop-empty"},
		{Name: "fail", Config: plugin.Config{"match": "bad"}},
		{Name: "upper", Label: "shout"},
	}, recs, func(*plugin.BatchResult) { released++ })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Results {
		switch {
		case r.Err != nil:
			got = append(got, "error: "+r.Err.Error())
		case r.Dropped:
			got = append(got, "dropped")
		default:
			got = append(got, string(r.Value))
		}
	}
	want := []string{"OK", "dropped", `error: step 2 (fail): fail: value contains "bad"`, "FINE"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("chain results\n got %q\nwant %q", got, want)
	}
	var se *manager.StepError
	if !errors.As(res.Results[2].Err, &se) || se.Step != 2 || !errors.Is(res.Results[2].Err, plugin.ErrProcessing) && plugin.CodeOf(res.Results[2].Err) == plugin.CodeUnknown {
		t.Errorf("the failed record's error %v: want a *StepError of step 2 that keeps its code", res.Results[2].Err)
	}
	if released != 3 {
		t.Errorf("release called %d times, want once per step (3)", released)
	}
	// A step that fails the whole batch ends the chain with its error.
	_, err = m.ProcessChain(context.Background(), []manager.ChainStep{{Name: "upper"}, {Name: "nope"}}, recs, nil)
	if !errors.As(err, &se) || se.Step != 2 || !errors.Is(err, plugin.ErrUnknownPlugin) {
		t.Errorf("chain with an unknown step: err = %v, want a StepError of step 2 matching ErrUnknownPlugin", err)
	}
}
