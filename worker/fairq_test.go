package worker

import (
	"math"
	"testing"

	"github.com/dataflare/dataflare/fleet"
)

// simulate runs slots of a worker over owners that always have work (a
// saturating backlog each), each batch taking records records, for n
// batch starts, and returns the records each owner got.
func simulate(q *fairQueue, owners []string, records map[string]int, n int) map[string]int {
	got := map[string]int{}
	for _, o := range owners {
		q.hint(o, 1)
	}
	for range n {
		order, _ := q.next()
		if len(order) == 0 {
			break
		}
		o := order[0].owner
		q.started(o, records[o])
		got[o] += records[o]
	}
	return got
}

// Owners with weights 1:3 that saturate the worker get 25% / 75% of the
// records, whatever their batch sizes.
func TestFairQueueWeights(t *testing.T) {
	for _, tt := range []struct {
		name    string
		records map[string]int
	}{
		{"same batches", map[string]int{"a": 100, "b": 100}},
		{"b's batches 7× smaller", map[string]int{"a": 700, "b": 100}},
		{"a's batches 10× smaller", map[string]int{"a": 10, "b": 100}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := newFairQueue()
			q.setWeight("a", 1)
			q.setWeight("b", 3)
			got := simulate(q, []string{"a", "b"}, tt.records, 10000)
			share := float64(got["a"]) / float64(got["a"]+got["b"])
			if math.Abs(share-0.25) > 0.01 {
				t.Errorf("a got %.3f of the records, want 0.25 (b %d, a %d)", share, got["b"], got["a"])
			}
		})
	}
}

// An owner that joins beside one with a long backlog is served at once,
// and does not get a burst for the time it was idle.
func TestFairQueueNewcomer(t *testing.T) {
	q := newFairQueue()
	simulate(q, []string{"big"}, map[string]int{"big": 100}, 1000) // big has run alone for a while
	q.hint("small", 1)
	order, alone := q.next()
	if alone || len(order) != 2 || order[0].owner != "small" {
		t.Fatalf("order after small joined = %v (alone %v), want small first", order, alone)
	}
	// Then they alternate: small earned no credit while idle.
	got := simulate(q, nil, map[string]int{"big": 100, "small": 100}, 100)
	if got["small"] < 4500 || got["small"] > 5500 {
		t.Errorf("small got %d of 10000 records after joining, want about half", got["small"])
	}
}

// Within an owner, high before normal before low; an owner whose queues
// were all found empty is not a candidate until a hint.
func TestFairQueuePriorities(t *testing.T) {
	q := newFairQueue()
	q.hint("a", 2)
	q.hint("a", 0)
	q.hint("a", 1)
	order, alone := q.next()
	if !alone || len(order) != 3 || order[0].priority != 0 || order[1].priority != 1 || order[2].priority != 2 {
		t.Fatalf("order = %v, want a's high, normal, low", order)
	}
	for p := range fleet.Priorities {
		q.empty("a", p)
	}
	if order, _ := q.next(); len(order) != 0 {
		t.Errorf("order after every queue was empty = %v, want none", order)
	}
	q.hintAll()
	if order, _ := q.next(); len(order) != 3 {
		t.Errorf("order after hintAll = %v, want a's three queues", order)
	}
}

// A low weight still progresses: nothing is starved.
func TestFairQueueNoStarvation(t *testing.T) {
	q := newFairQueue()
	q.setWeight("tiny", 0.01)
	q.setWeight("huge", 100)
	got := simulate(q, []string{"tiny", "huge"}, map[string]int{"tiny": 1, "huge": 1}, 1_000_000)
	if got["tiny"] == 0 {
		t.Error("an owner of weight 0.01 got nothing beside one of weight 100")
	}
}
