package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/nats-io/nats.go"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/local"
	"github.com/dataflare/dataflare/plugin"
)

// startFleet runs a whole fleet in this process for the examples; a real
// program connects to its NATS instead.
func startFleet() (*nats.Conn, func()) {
	f, err := local.Start(context.Background(), local.Config{Workers: 1})
	if err != nil {
		log.Fatal(err)
	}
	nc, err := nats.Connect(f.URL)
	if err != nil {
		log.Fatal(err)
	}
	return nc, func() { nc.Close(); f.Close() }
}

func Example() {
	nc, stop := startFleet()
	defer stop()
	ctx := context.Background()

	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	records := []plugin.Record{{Value: []byte("hello")}, {Value: []byte("fleet")}}
	job, err := c.Submit(ctx, "upper", client.Records(records))
	if err != nil {
		log.Fatal(err)
	}
	for out, err := range job.Results() {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(out.Index, string(out.Value))
	}
	// Output:
	// 0 HELLO
	// 1 FLEET
}

// The seeds' process_batch, across the fleet: one result per record, with
// per-record errors in place.
func ExampleClient_ProcessBatch() {
	nc, stop := startFleet()
	defer stop()
	ctx := context.Background()

	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	records := []plugin.Record{{Value: []byte("ok")}, {Value: []byte("bad apple")}, {Value: []byte("fine")}}
	res, err := c.ProcessBatch(ctx, "fail", plugin.Config{"match": "bad"}, records)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("processed %d, succeeded %d, failed %d\n", res.Processed(), res.Succeeded(), res.Failed())
	for _, e := range res.Errors() {
		fmt.Println(e.Index, e.Err)
	}
	// Output:
	// processed 3, succeeded 2, failed 1
	// 1 fail: value contains "bad"
}
