package worker

import (
	"cmp"
	"slices"

	"github.com/dataflare/dataflare/fleet"
)

// fairQueue decides which owner's queue a worker's free slot takes its
// next batch from (owners are named by their batch streams here): start-time fair queueing over the owners, weighted. Each
// owner has a virtual time that advances by records/weight for every batch
// of it that starts; the free slot goes to the owner with the smallest
// virtual time among those that may have work. An owner that had no work
// joins at the start tag of the latest batch of the busy owners (their
// virtual time before it started), so idleness earns no credit to spend in
// a burst later, and no owner waits behind another's backlog: a newcomer
// is served next. Over a busy stretch each owner gets records in
// proportion to its weight.
//
// Which queues may have work is a guess kept fresh from outside: a hint
// (a client published a batch), a fetch that found batches, or a periodic
// look sets it; a fetch that found none clears it. It is not safe for
// concurrent use: the worker's pull loop owns it.
type fairQueue struct {
	owners map[string]*fairOwner
}

// fairOwner is one owner's state in a fairQueue.
type fairOwner struct {
	weight float64
	vt     float64                     // virtual time: the start tag of its next batch
	start  float64                     // the start tag of its latest batch
	work   [len(fleet.Priorities)]bool // may have queued batches, by priority
	active bool                        // may have work at some priority
}

func newFairQueue() *fairQueue { return &fairQueue{owners: make(map[string]*fairOwner)} }

// owner returns owner's state, adding it with weight 1.
func (q *fairQueue) owner(name string) *fairOwner {
	o := q.owners[name]
	if o == nil {
		o = &fairOwner{weight: 1}
		q.owners[name] = o
	}
	return o
}

// setWeight sets owner's weight (a positive number; others count as 1).
func (q *fairQueue) setWeight(owner string, w float64) {
	if !(w > 0) {
		w = 1
	}
	q.owner(owner).weight = w
}

// forget removes an owner.
func (q *fairQueue) forget(owner string) { delete(q.owners, owner) }

// minActive returns the smallest start tag of the latest batches of the
// owners that may have work, and false when none may.
func (q *fairQueue) minActive() (float64, bool) {
	var m float64
	found := false
	for _, o := range q.owners {
		if o.active && (!found || o.start < m) {
			m, found = o.start, true
		}
	}
	return m, found
}

// hint marks owner's queue of priority p (an index into fleet.Priorities) as
// maybe holding batches.
func (q *fairQueue) hint(owner string, p int) {
	o := q.owner(owner)
	if !o.active {
		if m, ok := q.minActive(); ok && o.vt < m {
			o.vt, o.start = m, m
		}
		o.active = true
	}
	o.work[p] = true
}

// hintAll marks every queue of every known owner as maybe holding batches
// (the periodic look: a hint may have been lost).
func (q *fairQueue) hintAll() {
	for name := range q.owners {
		for p := range fleet.Priorities {
			q.hint(name, p)
		}
	}
}

// empty records that owner's queue of priority p had no batch.
func (q *fairQueue) empty(owner string, p int) {
	o := q.owners[owner]
	if o == nil {
		return
	}
	o.work[p] = false
	o.active = slices.Contains(o.work[:], true)
}

// started records that a batch of records records of owner started.
func (q *fairQueue) started(owner string, records int) {
	o := q.owner(owner)
	o.start = o.vt
	o.vt += float64(max(records, 1)) / o.weight
}

// candidate is a queue a free slot may fetch from.
type candidate struct {
	owner    string
	priority int // index into fleet.Priorities
}

// next returns the queues that may have work in the order a free slot
// should try them: owners by virtual time (then name, for a stable order),
// each owner's priorities from high to low (every queued high batch of an
// owner before its normal ones, its normal ones before its low ones). alone says whether only one
// owner may have work, so that a fetch may take as many batches as there
// are free slots without being unfair.
func (q *fairQueue) next() (order []candidate, alone bool) {
	type ov struct {
		name string
		vt   float64
	}
	var active []ov
	for name, o := range q.owners {
		if o.active {
			active = append(active, ov{name, o.vt})
		}
	}
	slices.SortFunc(active, func(a, b ov) int {
		if c := cmp.Compare(a.vt, b.vt); c != 0 {
			return c
		}
		return cmp.Compare(a.name, b.name)
	})
	for _, a := range active {
		o := q.owners[a.name]
		for p := range fleet.Priorities {
			if o.work[p] {
				order = append(order, candidate{a.name, p})
			}
		}
	}
	return order, len(active) == 1
}
