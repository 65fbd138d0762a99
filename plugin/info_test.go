package plugin_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dataflare/dataflare/plugin"
)

func TestTypeText(t *testing.T) {
	names := []string{"transformer", "filter", "enricher", "validator", "source", "sink"}
	for i, name := range names {
		typ := plugin.Type(i)
		t.Run(name, func(t *testing.T) {
			b, err := typ.MarshalText()
			if err != nil || string(b) != name {
				t.Fatalf("MarshalText() = (%q, %v), want (%q, nil)", b, err, name)
			}
			var got plugin.Type = 99
			if err := got.UnmarshalText(b); err != nil || got != typ {
				t.Errorf("UnmarshalText(%q) = (%v, %v), want (%v, nil)", b, got, err, typ)
			}
			if p, err := plugin.ParseType(name); err != nil || p != typ {
				t.Errorf("ParseType(%q) = (%v, %v), want (%v, nil)", name, p, err, typ)
			}
		})
	}
	if got, want := plugin.Type(6).String(), "type(6)"; got != want {
		t.Errorf("Type(6).String() = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "Transformer", "mapper", "type(6)", " sink"} {
		t.Run("bad "+bad, func(t *testing.T) {
			if _, err := plugin.ParseType(bad); !errors.Is(err, plugin.ErrInvalidInput) {
				t.Errorf("ParseType(%q) error = %v, want one matching ErrInvalidInput", bad, err)
			}
			typ := plugin.Enricher
			if err := typ.UnmarshalText([]byte(bad)); !errors.Is(err, plugin.ErrInvalidInput) {
				t.Errorf("UnmarshalText(%q) error = %v, want one matching ErrInvalidInput", bad, err)
			}
			if typ != plugin.Enricher {
				t.Errorf("a failed UnmarshalText changed the Type to %v", typ)
			}
		})
	}
}

func TestStateText(t *testing.T) {
	names := []string{"uninitialized", "ready", "running", "degraded", "failed", "stopped"}
	for i, name := range names {
		s := plugin.State(i)
		t.Run(name, func(t *testing.T) {
			b, err := s.MarshalText()
			if err != nil || string(b) != name {
				t.Fatalf("MarshalText() = (%q, %v), want (%q, nil)", b, err, name)
			}
			var got plugin.State = 99
			if err := got.UnmarshalText(b); err != nil || got != s {
				t.Errorf("UnmarshalText(%q) = (%v, %v), want (%v, nil)", b, got, err, s)
			}
		})
	}
	if got, want := plugin.State(6).String(), "state(6)"; got != want {
		t.Errorf("State(6).String() = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "Ready", "paused", "state(6)"} {
		t.Run("bad "+bad, func(t *testing.T) {
			s := plugin.Degraded
			if err := s.UnmarshalText([]byte(bad)); !errors.Is(err, plugin.ErrInvalidInput) {
				t.Errorf("UnmarshalText(%q) error = %v, want one matching ErrInvalidInput", bad, err)
			}
			if s != plugin.Degraded {
				t.Errorf("a failed UnmarshalText changed the State to %v", s)
			}
		})
	}
}

func TestStateJSON(t *testing.T) {
	in := map[string]plugin.State{"a": plugin.Ready, "b": plugin.Failed}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"a":"ready","b":"failed"}`; got != want {
		t.Errorf("json.Marshal = %s, want %s", got, want)
	}
	var out map[string]plugin.State
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestInfoJSON(t *testing.T) {
	info := plugin.Info{
		Name: "geo", Version: "2.1.0", Type: plugin.Enricher,
		Description: "adds a country", Author: "data team", APIVersion: plugin.APIVersion,
	}
	want := `{"name":"geo","version":"2.1.0","type":"enricher","description":"adds a country","author":"data team","api_version":"1.0"}`
	if got := string(info.JSON()); got != want {
		t.Errorf("JSON() = %s\nwant     %s", got, want)
	}
	var back plugin.Info
	if err := json.Unmarshal(info.JSON(), &back); err != nil {
		t.Fatalf("json.Unmarshal(JSON()): %v", err)
	}
	if diff := cmp.Diff(info, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if got, want := info.String(), "geo@2.1.0"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}

	minimal := plugin.Info{Name: "x", Version: "0.0.1"}
	if got, want := string(minimal.JSON()), `{"name":"x","version":"0.0.1","type":"transformer","api_version":""}`; got != want {
		t.Errorf("JSON() = %s, want %s", got, want)
	}
	if err := json.Unmarshal([]byte(`{"name":"x","type":"mapper"}`), &back); !errors.Is(err, plugin.ErrInvalidInput) {
		t.Errorf("json.Unmarshal of an unknown type: error = %v, want one matching ErrInvalidInput", err)
	}
}
