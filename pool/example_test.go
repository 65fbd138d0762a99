package pool_test

import (
	"errors"
	"fmt"

	"github.com/dataflare/dataflare/pool"
)

func ExamplePool() {
	p, err := pool.New(pool.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer p.Close()

	buf := p.Get(100) // from the 256-byte tier
	n := copy(buf.Bytes(), "hello")
	fmt.Println(len(buf.Bytes()), buf.Cap(), string(buf.Bytes()[:n]))
	if err := p.Put(buf); err != nil {
		panic(err)
	}
	fmt.Println(errors.Is(p.Put(buf), pool.ErrDoublePut))

	buf = p.Get(200) // the same buffer again: a hit
	defer p.Put(buf)
	s := p.Stats().Tiers[pool.Tiny]
	fmt.Printf("hits %d, misses %d, efficiency %.2f\n", s.Hits, s.Misses, s.Efficiency)
	// Output:
	// 100 256 hello
	// true
	// hits 1, misses 1, efficiency 0.59
}

func ExamplePool_Pin() {
	p, err := pool.New(pool.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer p.Close()

	msg := p.Get(4096)
	value := msg.Bytes()[10:20] // a record decoded zero-copy aliases msg
	_ = value
	p.Pin(msg) // while records alias it, a stray Put must not recycle it
	fmt.Println(p.Put(msg))
	p.Unpin(msg)
	fmt.Println(p.Put(msg))
	// Output:
	// pool: buffer is pinned
	// <nil>
}

func ExamplePool_nil() {
	var p *pool.Pool // no pool: plain allocations
	buf := p.Get(10)
	fmt.Println(len(buf.Bytes()), buf.Cap(), p.Put(buf))
	// Output:
	// 10 10 <nil>
}
