package plugin_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dataflare/dataflare/plugin"
)

func TestConfigInt(t *testing.T) {
	cfg := plugin.Config{
		"n": "42", "neg": "-7", "plus": "+3", "zero": "0",
		"empty": "", "word": "ten", "float": "1.5", "space": " 4", "huge": "99999999999999999999999",
	}
	tests := []struct {
		key     string
		want    int
		wantErr bool
	}{
		{"n", 42, false},
		{"neg", -7, false},
		{"plus", 3, false},
		{"zero", 0, false},
		{"absent", 11, false}, // the default
		{"empty", 0, true},
		{"word", 0, true},
		{"float", 0, true},
		{"space", 0, true},
		{"huge", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := cfg.Int(tt.key, 11)
			if tt.wantErr {
				if !errors.Is(err, plugin.ErrInvalidInput) {
					t.Errorf("Int(%q) error = %v, want one matching ErrInvalidInput", tt.key, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Int(%q) = (%d, %v), want (%d, nil)", tt.key, got, err, tt.want)
			}
		})
	}
}

func TestConfigDuration(t *testing.T) {
	cfg := plugin.Config{"ms": "250ms", "mix": "1h2m3s", "zero": "0", "neg": "-1s", "empty": "", "bare": "5", "word": "soon"}
	tests := []struct {
		key     string
		want    time.Duration
		wantErr bool
	}{
		{"ms", 250 * time.Millisecond, false},
		{"mix", time.Hour + 2*time.Minute + 3*time.Second, false},
		{"zero", 0, false},
		{"neg", -time.Second, false},
		{"absent", 7 * time.Second, false}, // the default
		{"empty", 0, true},
		{"bare", 0, true},
		{"word", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := cfg.Duration(tt.key, 7*time.Second)
			if tt.wantErr {
				if !errors.Is(err, plugin.ErrInvalidInput) {
					t.Errorf("Duration(%q) error = %v, want one matching ErrInvalidInput", tt.key, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Duration(%q) = (%v, %v), want (%v, nil)", tt.key, got, err, tt.want)
			}
		})
	}
}

func TestConfigNil(t *testing.T) {
	var cfg plugin.Config // a job without configuration
	if got := cfg.Get("x"); got != "" {
		t.Errorf("Get = %q, want \"\"", got)
	}
	if n, err := cfg.Int("x", 3); n != 3 || err != nil {
		t.Errorf("Int = (%d, %v), want (3, nil)", n, err)
	}
	if d, err := cfg.Duration("x", time.Second); d != time.Second || err != nil {
		t.Errorf("Duration = (%v, %v), want (1s, nil)", d, err)
	}
}
