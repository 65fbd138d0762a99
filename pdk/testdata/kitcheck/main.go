// Command kitcheck is a Go plugin for the pdk's tests: what it does with a
// record depends on the record's value.
//
//	same         unchanged
//	drop         dropped
//	error        a per-record error (invalid input)
//	panic        panics (a per-record error, code panic)
//	print:TEXT   writes TEXT to stderr, value "printed"
//	clock        the wall clock's year
//	rand         8 random bytes, hex
//	env          the number of environment variables and arguments
//	spin         loops for ever
//	alloc:N      allocates and writes N MiB, keeps them, value "ok"
//	cfg          the configuration's "suffix"
//
// A configuration with "refuse" fails the batch.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dataflare/dataflare/pdk"
	"github.com/dataflare/dataflare/plugin"
)

var (
	suffix string
	kept   [][]byte
)

func init() {
	pdk.OnConfig(func(cfg plugin.Config) error {
		if v := cfg.Get("refuse"); v != "" {
			return fmt.Errorf("kitcheck: refusing configuration: %s", v)
		}
		suffix = cfg.Get("suffix")
		return nil
	})
	pdk.Handle(plugin.Info{Name: "kitcheck", Version: "0.1.0", Type: plugin.Transformer}, process)
}

func process(_ plugin.Config, r plugin.Record) (plugin.Result, error) {
	v := string(r.Value)
	switch {
	case v == "same":
		return plugin.Value(r.Value), nil
	case v == "drop":
		return plugin.Drop(), nil
	case v == "error":
		return plugin.Result{}, plugin.Errorf(plugin.CodeInvalidInput, "kitcheck: bad record")
	case v == "panic":
		var m map[string]int
		m["x"]++ // assignment to entry in nil map
	case strings.HasPrefix(v, "print:"):
		fmt.Fprintln(os.Stderr, v[len("print:"):])
		return plugin.Value([]byte("printed")), nil
	case v == "clock":
		return plugin.Value([]byte(strconv.Itoa(time.Now().Year()))), nil
	case v == "rand":
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		return plugin.Value([]byte(hex.EncodeToString(b))), nil
	case v == "env":
		return plugin.Value(fmt.Appendf(nil, "%d %d", len(os.Environ()), len(os.Args))), nil
	case v == "spin":
		for n := 0; ; n++ {
			if n < 0 {
				break
			}
		}
	case strings.HasPrefix(v, "alloc:"):
		n, _ := strconv.Atoi(v[len("alloc:"):])
		b := make([]byte, n<<20)
		for i := range b {
			b[i] = byte(i)
		}
		kept = append(kept, b)
		return plugin.Value([]byte("ok")), nil
	case v == "cfg":
		return plugin.Value([]byte(suffix)), nil
	}
	return plugin.Value(r.Value), nil
}

// main is not called: a reactor module runs its init functions only.
func main() {}
