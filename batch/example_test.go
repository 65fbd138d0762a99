package batch_test

import (
	"errors"
	"fmt"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/plugin"
)

func Example() {
	b := &batch.Batch{
		Job: "j1", Seq: 7, Plugin: "upper",
		Records: []plugin.Record{{Key: []byte("k"), Value: []byte("hello")}},
	}
	msg, err := batch.AppendBatch(nil, b)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(msg) == batch.BatchSize(b))

	var got batch.Batch // reuse it for the next message
	if err := batch.DecodeBatch(msg, &got); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s #%d: %s=%s\n", got.Job, got.Seq, got.Records[0].Key, got.Records[0].Value)

	err = batch.DecodeBatch(msg[:len(msg)-1], &got)
	fmt.Println(errors.Is(err, batch.ErrMalformed), err)
	// Output:
	// true
	// j1 #7: k=hello
	// true batch: malformed message: record 0: key, value and headers: needs 6 bytes, 5 left
}

func ExampleLimits_CheckRecord() {
	l := batch.Limits{MaxValueSize: 4} // the other limits keep their defaults
	err := l.CheckRecord(&plugin.Record{Value: []byte("too long")})
	fmt.Println(errors.Is(err, batch.ErrLimit), plugin.CodeOf(err), err)
	// Output:
	// true too large batch: limit exceeded: value: 8 > limit 4
}

func ExampleDecodeEntries() {
	in := []plugin.Record{{Value: []byte("a")}, {Value: []byte("b")}}
	var out []byte // what a plugin writes
	out = batch.AppendEntry(out, plugin.Value([]byte("A")))
	out = batch.AppendUnchanged(out)

	res := make([]plugin.Result, len(in))
	if err := batch.DecodeEntries(out, in, res); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s %s\n", res[0].Value, res[1].Value)
	// Output: A b
}
