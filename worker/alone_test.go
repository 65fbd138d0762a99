package worker

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dataflare/dataflare/internal/proto"
)

// fakeMsg is a delivered batch message with the metadata and headers a
// delivery is read from.
type fakeMsg struct {
	jetstream.Msg
	delivered uint64
	header    nats.Header
}

func (m fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: m.delivered, Stream: "DF_BATCHES_x"}, nil
}

func (m fakeMsg) Headers() nats.Header { return m.header }

// TestDeliveryCountsOnlyRunsAlone: a batch as its client published it has
// freeDeliveries that never count; a half of a split batch and a copy
// released to run alone count from their first delivery, the copy from
// the count it carries; a forged count is bounded.
func TestDeliveryCountsOnlyRunsAlone(t *testing.T) {
	w := &Worker{queues: &queues{byName: map[string]*batchQueue{}}}
	const limit = proto.DefaultMaxDeliver
	h := func(kv ...string) nats.Header {
		out := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	for _, tt := range []struct {
		name      string
		delivered uint64
		header    nats.Header
		suspect   bool
		alone     int
		split     bool
		last      bool
	}{
		{"first delivery", 1, h(), false, 0, false, false},
		{"second delivery", 2, h(), false, 0, false, false},
		{"third delivery runs alone", 3, h(), true, 0, false, false},
		{"last alone", 2 + limit, h(), true, limit - 1, false, true},
		{"split unrun", 3 + limit, h(), true, limit, true, true},
		{"half, first delivery", 1, h(proto.HeaderSplit, "1"), true, 0, false, false},
		{"half, split unrun", 1 + limit, h(proto.HeaderSplit, "1"), true, limit, true, true},
		{"copy carries its count", 1, h(proto.HeaderAlone, "2"), true, 2, false, false},
		{"copy, split unrun", 3, h(proto.HeaderAlone, "2"), true, limit, true, true},
		{"unreadable count", 1, h(proto.HeaderAlone, "999999999999999999999"), true, 0, false, false},
		{"forged huge count", 1, h(proto.HeaderAlone, "1000"), true, limit, true, true},
		{"negative count", 1, h(proto.HeaderAlone, "-5"), true, 0, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := w.deliveryOf(fakeMsg{delivered: tt.delivered, header: tt.header})
			if d.suspect != tt.suspect || d.alone != tt.alone || d.splitUnrun() != tt.split || d.last() != tt.last {
				t.Errorf("delivery %d %v: suspect %v alone %d split %v last %v, want %v %d %v %v",
					tt.delivered, tt.header, d.suspect, d.alone, d.splitUnrun(), d.last(), tt.suspect, tt.alone, tt.split, tt.last)
			}
			if d.mustRunAlone() != (tt.suspect && !tt.split) {
				t.Errorf("mustRunAlone = %v", d.mustRunAlone())
			}
		})
	}
}

// TestAloneIDs: copies of a batch released to run alone get ids of their
// own, one generation after another, and their halves the original's.
func TestAloneIDs(t *testing.T) {
	for _, tt := range []struct{ id, next, origin string }{
		{"acme.j1.k3y.3", "acme.j1.k3y.3.a1", "acme.j1.k3y.3"},
		{"acme.j1.k3y.3.a1", "acme.j1.k3y.3.a2", "acme.j1.k3y.3"},
		{"acme.j1.k3y.3.a9", "acme.j1.k3y.3.a10", "acme.j1.k3y.3"},
		{"acme.j1.k3y.3.s0-2", "acme.j1.k3y.3.s0-2.a1", "acme.j1.k3y.3.s0-2"},
		{"acme.j1.k3y.3.s0-2.a3", "acme.j1.k3y.3.s0-2.a4", "acme.j1.k3y.3.s0-2"},
		{"acme.abc.a7x.3", "acme.abc.a7x.3.a1", "acme.abc.a7x.3"},
		{"acme.j1.k.3.a01", "acme.j1.k.3.a01.a1", "acme.j1.k.3.a01"},
	} {
		if got := aloneID(tt.id); got != tt.next {
			t.Errorf("aloneID(%q) = %q, want %q", tt.id, got, tt.next)
		}
		if got := originID(tt.id); got != tt.origin {
			t.Errorf("originID(%q) = %q, want %q", tt.id, got, tt.origin)
		}
	}
}
