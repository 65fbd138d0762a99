package proto_test

import (
	"testing"

	"github.com/dataflare/dataflare/internal/proto"
)

func TestParseDeadID(t *testing.T) {
	tests := []struct {
		id    string
		owner string
		seq   uint64
		ok    bool
	}{
		{"alice.42", "alice", 42, true},
		{"anon.1", "anon", 1, true},
		{"alice.0", "", 0, false},
		{"alice", "", 0, false},
		{"alice.", "", 0, false},
		{".42", "", 0, false},
		{"alice.x", "", 0, false},
		{"alice.-1", "", 0, false},
		{"alice.4.2", "", 0, false},
		{"al ice.4", "", 0, false},
		{"alice.99999999999999999999999", "", 0, false},
	}
	for _, tt := range tests {
		owner, seq, ok := proto.ParseDeadID(tt.id)
		if owner != tt.owner || seq != tt.seq || ok != tt.ok {
			t.Errorf("ParseDeadID(%q) = %q, %d, %v; want %q, %d, %v", tt.id, owner, seq, ok, tt.owner, tt.seq, tt.ok)
		}
	}
	if got := proto.DeadGetSubject(proto.DeadID("bob", 7)); got != "df.deadletter.get.bob.7" {
		t.Errorf("subject of bob's dead letter 7: %q", got)
	}
}

// FuzzParseDeadID: what parses is an id that DeadID makes again, whose
// request subject names its owner.
func FuzzParseDeadID(f *testing.F) {
	for _, s := range []string{"alice.42", "a.1", "alice.0", "..", "a.b.c", "x.18446744073709551615"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		owner, seq, ok := proto.ParseDeadID(id)
		if !ok {
			return
		}
		if !proto.ValidName(owner) || seq == 0 {
			t.Fatalf("ParseDeadID(%q) = %q, %d", id, owner, seq)
		}
		if again := proto.DeadID(owner, seq); again != id {
			if o2, s2, ok2 := proto.ParseDeadID(again); !ok2 || o2 != owner || s2 != seq {
				t.Fatalf("%q parses to %q %d, made again %q", id, owner, seq, again)
			}
		}
	})
}
