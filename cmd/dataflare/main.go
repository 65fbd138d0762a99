// Command dataflare runs and uses a DataFlare fleet: the embedded demo and
// dev stack, the coordinator and worker daemons, plugin management, job
// submission, status, reports and the benchmark. `dataflare --help` lists
// the commands.
package main

import (
	"os"

	"github.com/dataflare/dataflare/cmd/dataflare/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
