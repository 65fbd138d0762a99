package manager

import "time"

// slots is the number of slots a window is cut into: it forgets old events
// one slot (Window/12) at a time.
const slots = 12

// counts is what a window adds up.
type counts struct {
	records, failed, panics uint64
}

func (c *counts) add(o counts) {
	c.records += o.records
	c.failed += o.failed
	c.panics += o.panics
}

// window counts events over the last span on the injected clock, as a ring
// of slots. The zero window needs its span set. It is guarded by its
// entry's mutex.
type window struct {
	span time.Duration
	ring [slots]slot
}

type slot struct {
	idx int64 // which slot of time this is; 0 = unused
	counts
}

func (w *window) slotLen() int64 { return max(int64(w.span)/slots, 1) }

// slotOf returns the slot number of t (≥ 1).
func (w *window) slotOf(t time.Time) int64 { return t.UnixNano()/w.slotLen() + 1 }

func (w *window) add(now time.Time, c counts) {
	idx := w.slotOf(now)
	s := &w.ring[idx%slots]
	if s.idx != idx {
		s.idx, s.counts = idx, counts{}
	}
	s.counts.add(c)
}

// sum returns the counts of the last slots slots and when the oldest of
// them began.
func (w *window) sum(now time.Time) (c counts, from time.Time) {
	cur := w.slotOf(now)
	for i := range w.ring {
		if s := &w.ring[i]; s.idx > cur-slots && s.idx <= cur {
			c.add(s.counts)
		}
	}
	return c, time.Unix(0, (cur-slots)*w.slotLen())
}

func (w *window) reset() { w.ring = [slots]slot{} }
