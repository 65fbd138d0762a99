package wasmstore

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dataflare/dataflare/plugin"
)

func validManifest() Manifest {
	return Manifest{
		Name:    "upper-wasm",
		Version: "1.2.3+build.4",
		Digest:  Digest([]byte("module")),
		Size:    6,
		Info:    plugin.Info{Name: "upper-wasm", Version: "1.2.3", Type: plugin.Filter, APIVersion: "1.0"},
		Created: time.Date(2025, 11, 26, 14, 0, 0, 123, time.UTC),
	}
}

func TestManifestJSONRoundTrip(t *testing.T) {
	m := validManifest()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifest(b)
	if err != nil {
		t.Fatalf("ParseManifest(%s): %v", b, err)
	}
	if diff := cmp.Diff(m, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestParseManifestRefuses(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*Manifest)
		raw    string
	}{
		{name: "not json", raw: "{"},
		{name: "bad type", raw: `{"name":"a","version":"1","digest":"` + Digest(nil) + `","info":{"type":"wizard"}}`},
		{name: "bad name", change: func(m *Manifest) { m.Name = "a b" }},
		{name: "bad version", change: func(m *Manifest) { m.Version = "" }},
		{name: "latest version", change: func(m *Manifest) { m.Version = Latest }},
		{name: "short digest", change: func(m *Manifest) { m.Digest = "sha256:abc" }},
		{name: "upper-case digest", change: func(m *Manifest) { m.Digest = strings.ToUpper(m.Digest) }},
		{name: "nats digest", change: func(m *Manifest) { m.Digest = "SHA-256=abc" }},
		{name: "negative size", change: func(m *Manifest) { m.Size = -1 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw := []byte(tt.raw)
			if tt.change != nil {
				m := validManifest()
				tt.change(&m)
				raw, _ = json.Marshal(m)
			}
			if _, err := ParseManifest(raw); !errors.Is(err, ErrBadManifest) {
				t.Errorf("ParseManifest(%s) error = %v, want ErrBadManifest", raw, err)
			}
		})
	}
}

func TestValidNames(t *testing.T) {
	for _, tt := range []struct {
		s             string
		name, version bool
	}{
		{"upper-wasm", true, true},
		{"a_b", true, true},
		{"1.0.0", false, true},
		{"1.0.0-rc.1+sha", false, true},
		{"latest", true, false},
		{"", false, false},
		{"a.b", false, true},
		{"a/b", false, false},
		{"a*", false, false},
		{"a>", false, false},
		{"é", false, false},
		{strings.Repeat("a", 64), true, true},
		{strings.Repeat("a", 65), false, false},
	} {
		if got := ValidName(tt.s); got != tt.name {
			t.Errorf("ValidName(%q) = %v, want %v", tt.s, got, tt.name)
		}
		if got := ValidVersion(tt.s); got != tt.version {
			t.Errorf("ValidVersion(%q) = %v, want %v", tt.s, got, tt.version)
		}
	}
}

func TestNATSDigest(t *testing.T) {
	// The digest the NATS object store writes for "hello" (nats.go
	// GetObjectDigestValue).
	const want = "SHA-256=LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="
	sum := [32]byte{}
	copy(sum[:], mustHex(t, Digest([]byte("hello"))[len("sha256:"):]))
	if got := natsDigest(sum); got != want {
		t.Errorf("natsDigest(hello) = %s, want %s", got, want)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		for _, c := range s[2*i : 2*i+2] {
			v <<= 4
			switch {
			case '0' <= c && c <= '9':
				v |= byte(c - '0')
			case 'a' <= c && c <= 'f':
				v |= byte(c-'a') + 10
			default:
				t.Fatalf("bad hex %q", s)
			}
		}
		b[i] = v
	}
	return b
}

func FuzzManifest(f *testing.F) {
	good, _ := json.Marshal(validManifest())
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"name":"a","version":"1","digest":"sha256:` + strings.Repeat("0", 64) + `","size":1,"info":{"type":"sink"},"created":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"name":"a","version":"1","digest":"sha256:` + strings.Repeat("0", 64) + `","size":-5}`))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"name":"a","version":"1","digest":"sha256:` + strings.Repeat("0", 64) + `","size":1,"info":{},"created":"2025-01-01T00:00:00Z","policy":{"timeout":"50ms","memory":65536,"grants":["kv:b","log"]},"signer":"A","signature":"x"}`))
	f.Add([]byte(`{"name":"a","version":"1","digest":"sha256:` + strings.Repeat("0", 64) + `","size":1,"policy":{"timeout":"1.5h","memory":1000,"grants":[]},"signer":"A"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrBadManifest) {
				t.Fatalf("error %v does not wrap ErrBadManifest", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed manifest does not validate: %v", err)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseManifest(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if diff := cmp.Diff(m, again, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
			t.Fatalf("re-parse differs (-first +second):\n%s", diff)
		}
	})
}
