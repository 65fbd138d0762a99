//go:build client

package cli

func init() {
	buildNote = `

This is the client build (go build -tags client): it submits to a fleet and manages jobs, dead
letters and pipelines, and starts in a fraction of the full build's time. demo, dev, bench, the
coordinator and worker daemons, plugin management and trace export are in the full build.`
}
