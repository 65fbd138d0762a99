package sizer

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if c.Target != 100*time.Millisecond || c.Initial != 100 || c.Min != 1 || c.Max != 1000 ||
		c.MaxBytes != DefaultMaxBytes || c.Interval != time.Second || c.MaxAge != DefaultMaxAge ||
		c.Deadband != 0.1 || c.MaxStep != 2 || c.Clock == nil {
		t.Errorf("DefaultConfig() = %+v; want the seed defaults", c)
	}
}

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		name               string
		cfg                Config
		initial, min, maxN int
	}{
		{"zero", Config{}, 100, 1, 1000},
		{"max below initial default", Config{Max: 50}, 50, 1, 50},
		{"min above initial default", Config{Min: 200}, 200, 200, 1000},
		{"min above max default", Config{Min: 5000}, 5000, 5000, 5000},
		{"fleet", Config{Max: 10000}, 100, 1, 10000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if err != nil {
				t.Fatalf("New(%+v): %v", tt.cfg, err)
			}
			got := c.Config()
			if got.Initial != tt.initial || got.Min != tt.min || got.Max != tt.maxN {
				t.Errorf("Initial, Min, Max = %d, %d, %d; want %d, %d, %d", got.Initial, got.Min, got.Max, tt.initial, tt.min, tt.maxN)
			}
			if n := c.Size(0); n != tt.initial {
				t.Errorf("Size before any estimate = %d; want Initial %d", n, tt.initial)
			}
		})
	}
}

func TestNewInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"negative target", Config{Target: -time.Second}},
		{"negative min", Config{Min: -1}},
		{"max below min", Config{Min: 10, Max: 5}},
		{"initial below min", Config{Min: 10, Initial: 5}},
		{"initial above max", Config{Max: 10, Initial: 11}},
		{"negative max bytes", Config{MaxBytes: -1}},
		{"negative interval", Config{Interval: -time.Second}},
		{"negative max age", Config{MaxAge: -time.Second}},
		{"deadband 1", Config{Deadband: 1}},
		{"negative deadband", Config{Deadband: -0.1}},
		{"NaN deadband", Config{Deadband: math.NaN()}},
		{"max step 1", Config{MaxStep: 1}},
		{"max step below 1", Config{MaxStep: 0.5}},
		{"infinite max step", Config{MaxStep: math.Inf(1)}},
		{"NaN max step", Config{MaxStep: math.NaN()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("New(%+v) error = %v; want ErrInvalidConfig", tt.cfg, err)
			}
			if c != nil {
				t.Errorf("New returned a Controller with an error")
			}
		})
	}
}
