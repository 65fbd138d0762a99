// Command json-extract-wasm takes one field out of each JSON record.
//
// Configuration (dataflare submit --config k=v):
//
//	field    the field's path, dot-separated: "user.address.city"; a
//	         number indexes an array: "items.0.sku" (required)
//	missing  what a record without the field gets: "error" (default),
//	         "drop", or "null" (the value null)
//	raw      "true" keeps a string field as JSON ("\"Paris\""); by default
//	         a string field gives its text (Paris)
//
// Other JSON values (numbers, objects, arrays, true, false, null) are
// returned as compact JSON. A record that is not JSON gets an error.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false -o json-extract.wasm .
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/dataflare/dataflare/pdk"
	"github.com/dataflare/dataflare/plugin"
)

// The job's configuration, parsed once per configuration by OnConfig (an
// instance runs one batch at a time).
var (
	path    []string
	missing string
	raw     bool
)

func init() {
	pdk.OnConfig(configure)
	pdk.Handle(plugin.Info{
		Name:        "json-extract-wasm",
		Version:     "1.0.0",
		Type:        plugin.Transformer,
		Description: "extracts one field (config field=a.b.c) from JSON records",
		Author:      "DataFlare",
	}, extract)
}

func configure(cfg plugin.Config) error {
	field := cfg.Get("field")
	if field == "" {
		return errors.New("json-extract: config field is required (e.g. field=user.name)")
	}
	path = strings.Split(field, ".")
	for _, p := range path {
		if p == "" {
			return fmt.Errorf("json-extract: config field=%q has an empty step", field)
		}
	}
	switch missing = cfg.Get("missing"); missing {
	case "":
		missing = "error"
	case "error", "drop", "null":
	default:
		return fmt.Errorf("json-extract: config missing=%q: want error, drop or null", missing)
	}
	switch v := cfg.Get("raw"); v {
	case "", "false":
		raw = false
	case "true":
		raw = true
	default:
		return fmt.Errorf("json-extract: config raw=%q: want true or false", v)
	}
	return nil
}

var errMissing = errors.New("missing")

func extract(_ plugin.Config, r plugin.Record) (plugin.Result, error) {
	if !json.Valid(r.Value) {
		return plugin.Result{}, plugin.Errorf(plugin.CodeInvalidInput, "json-extract: record is not JSON")
	}
	v, err := lookup(r.Value, path)
	switch {
	case errors.Is(err, errMissing):
		switch missing {
		case "drop":
			return plugin.Drop(), nil
		case "null":
			return plugin.Value([]byte("null")), nil
		}
		return plugin.Result{}, plugin.Errorf(plugin.CodeProcessing, "json-extract: no field %s", strings.Join(path, "."))
	case err != nil:
		return plugin.Result{}, plugin.Errorf(plugin.CodeInvalidInput, "json-extract: %v", err)
	}
	if !raw && len(v) > 0 && v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return plugin.Result{}, plugin.Errorf(plugin.CodeInvalidInput, "json-extract: %v", err)
		}
		return plugin.Value([]byte(s)), nil
	}
	var out bytes.Buffer
	if err := json.Compact(&out, v); err != nil {
		return plugin.Result{}, plugin.Errorf(plugin.CodeInvalidInput, "json-extract: %v", err)
	}
	return plugin.Value(out.Bytes()), nil
}

// lookup follows path through doc, one object key or array index per step.
func lookup(doc []byte, path []string) (json.RawMessage, error) {
	cur := json.RawMessage(doc)
	for _, step := range path {
		cur = bytes.TrimSpace(cur)
		if len(cur) == 0 {
			return nil, errMissing
		}
		switch cur[0] {
		case '{':
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(cur, &obj); err != nil {
				return nil, err
			}
			v, ok := obj[step]
			if !ok {
				return nil, errMissing
			}
			cur = v
		case '[':
			i, err := strconv.Atoi(step)
			if err != nil {
				return nil, errMissing
			}
			var arr []json.RawMessage
			if err := json.Unmarshal(cur, &arr); err != nil {
				return nil, err
			}
			if i < 0 || i >= len(arr) {
				return nil, errMissing
			}
			cur = arr[i]
		default:
			return nil, errMissing
		}
	}
	return cur, nil
}

// main is not called: a reactor module runs its init functions only.
func main() {}
