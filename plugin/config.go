package plugin

import (
	"fmt"
	"strconv"
	"time"
)

// Config is a job's plugin configuration: key/value pairs handed to the plugin
// with every batch. It is shared between goroutines and must not be modified.
type Config map[string]string

// Get returns the value of key, or "".
func (c Config) Get(key string) string { return c[key] }

// Int returns key parsed as an integer, or def when the key is absent. A value
// that is not an integer is an error wrapping ErrInvalidInput.
func (c Config) Int(key string, def int) (int, error) {
	v, ok := c[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%w: config %s=%q is not an integer", ErrInvalidInput, key, v)
	}
	return n, nil
}

// Duration returns key parsed by time.ParseDuration, or def when the key is
// absent. A bad value is an error wrapping ErrInvalidInput.
func (c Config) Duration(key string, def time.Duration) (time.Duration, error) {
	v, ok := c[key]
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%w: config %s=%q is not a duration", ErrInvalidInput, key, v)
	}
	return d, nil
}
