package plugin

import (
	"encoding/json"
	"fmt"
)

// APIVersion is the version of this contract that plugins are built against.
const APIVersion = "1.0"

// Type says what kind of work a plugin does. It is informational: the runtime
// treats every type the same way.
type Type uint8

// Plugin types, as in the original library.
const (
	Transformer Type = iota // changes values
	Filter                  // drops records
	Enricher                // adds data to records
	Validator               // fails bad records
	Source                  // produces records
	Sink                    // consumes records
)

var typeNames = [...]string{"transformer", "filter", "enricher", "validator", "source", "sink"}

// String returns the type's lower-case name.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ParseType returns the Type named s, or an error wrapping ErrInvalidInput.
func ParseType(s string) (Type, error) {
	for i, n := range typeNames {
		if n == s {
			return Type(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown plugin type %q", ErrInvalidInput, s)
}

// MarshalText implements encoding.TextMarshaler.
func (t Type) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *Type) UnmarshalText(b []byte) error {
	v, err := ParseType(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// Info describes a plugin.
type Info struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Type        Type   `json:"type"`
	Description string `json:"description,omitempty"`
	Author      string `json:"author,omitempty"`
	APIVersion  string `json:"api_version"`
}

// String returns "name@version".
func (i Info) String() string { return i.Name + "@" + i.Version }

// JSON returns i as JSON.
func (i Info) JSON() []byte {
	b, _ := json.Marshal(i) // cannot fail: plain strings
	return b
}

// State is a plugin's lifecycle state.
type State uint8

// Plugin states.
const (
	Uninitialized State = iota // not yet ready
	Ready                      // accepting work
	Running                    // processing work now
	Degraded                   // working, but failing too often
	Failed                     // unusable
	Stopped                    // closed
)

var stateNames = [...]string{"uninitialized", "ready", "running", "degraded", "failed", "stopped"}

// String returns the state's lower-case name.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("%w: unknown plugin state %q", ErrInvalidInput, b)
}
