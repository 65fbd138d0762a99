package fleet_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dataflare/dataflare/fleet"
)

func TestBreakerMerge(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	closed := fleet.Breaker{State: fleet.BreakerClosed, Since: at(0), Opens: 2, LastRecovery: 3 * time.Second, RecoveredAt: at(0)}
	open := fleet.Breaker{State: fleet.BreakerOpen, Since: at(5), Until: at(6), Failures: 5, Opens: 1, LastRecovery: time.Second, RecoveredAt: at(-10)}
	openEarlier := fleet.Breaker{State: fleet.BreakerOpen, Since: at(4), Until: at(5), Failures: 7, Opens: 1}
	halfOpen := fleet.Breaker{State: fleet.BreakerHalfOpen, Since: at(7), Opens: 1}
	for _, tc := range []struct {
		name string
		in   []fleet.Breaker
		want fleet.Breaker
	}{
		{"one", []fleet.Breaker{closed}, closed},
		{"the worse state wins, the latest recovery is kept", []fleet.Breaker{closed, open},
			fleet.Breaker{State: fleet.BreakerOpen, Since: at(5), Until: at(6), Failures: 5, Opens: 3, LastRecovery: 3 * time.Second, RecoveredAt: at(0)}},
		{"half-open is better than open", []fleet.Breaker{open, halfOpen},
			fleet.Breaker{State: fleet.BreakerOpen, Since: at(5), Until: at(6), Failures: 5, Opens: 2, LastRecovery: time.Second, RecoveredAt: at(-10)}},
		{"two open: the earlier since, the later until", []fleet.Breaker{open, openEarlier},
			fleet.Breaker{State: fleet.BreakerOpen, Since: at(4), Until: at(6), Failures: 7, Opens: 2, LastRecovery: time.Second, RecoveredAt: at(-10)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got fleet.Breaker
			for i := range tc.in {
				got.Merge(&tc.in[i])
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("merged (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBreakerJSON(t *testing.T) {
	b := fleet.Breaker{State: fleet.BreakerHalfOpen, Since: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), Opens: 1}
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"state":"half-open","since":"2026-11-26T12:00:00Z","opens":1}`; string(data) != want {
		t.Errorf("JSON = %s, want %s", data, want)
	}
	var back fleet.Breaker
	if err := json.Unmarshal(data, &back); err != nil || !back.State.Valid() || back != b {
		t.Errorf("read back %+v, %v", back, err)
	}
	if fleet.BreakerState("ajar").Valid() {
		t.Error(`"ajar" is a valid breaker state`)
	}
}
