// Command kv-lookup-wasm replaces each record's value, a key, with that
// key's value in a NATS KV bucket: the enricher of the plugin kits, reading
// the bucket through the worker's cache (capability kv:BUCKET).
//
// Configuration (dataflare submit --config k=v):
//
//	bucket   the KV bucket (required); the module must be pushed with
//	         --grant kv:BUCKET for it
//
// A key without a value, or one NATS does not allow, fails its record;
// a bucket not granted fails every record, saying so; a bucket that cannot
// be read now (NATS unreachable, or no such bucket) fails the batch as
// unavailable, so that the worker runs it again later.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false -o kv-lookup.wasm .
//	dataflare plugin push kv-lookup kv-lookup.wasm --grant kv:users
package main

import (
	"errors"

	"github.com/dataflare/dataflare/pdk"
	"github.com/dataflare/dataflare/plugin"
)

// bucket is the job's configured bucket, set by OnConfig; values holds the
// values read for a batch (an instance runs one batch at a time).
var (
	bucket string
	values []byte
	ends   []int
)

func init() {
	pdk.OnConfig(func(cfg plugin.Config) error {
		if bucket = cfg.Get("bucket"); bucket == "" {
			return errors.New("kv-lookup: config bucket is required (e.g. bucket=users)")
		}
		return nil
	})
	pdk.HandleBatch(plugin.Info{
		Name:        "kv-lookup-wasm",
		Version:     "1.0.0",
		Type:        plugin.Enricher,
		Description: "replaces each key with its value in a NATS KV bucket (config bucket=NAME)",
		Author:      "DataFlare",
	}, lookup)
}

func lookup(cfg plugin.Config, recs []plugin.Record, out []plugin.Result) error {
	values, ends = values[:0], ends[:0]
	for i, r := range recs {
		var err error
		values, err = pdk.KVGetAppend(values, bucket, string(r.Value))
		if errors.Is(err, pdk.ErrUnavailable) {
			return err
		}
		out[i].Err = err
		ends = append(ends, len(values))
	}
	// Values are sliced once all are read: values may have moved while it
	// grew.
	start := 0
	for i := range recs {
		if out[i].Err == nil {
			out[i].Value = values[start:ends[i]:ends[i]]
		}
		start = ends[i]
	}
	return nil
}

func main() {}
