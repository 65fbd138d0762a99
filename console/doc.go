// Package console is DataFlare's web console: an http.Handler that shows a
// fleet to the people who run it — its workers and their health, the
// throughput and batch size of every plugin over the last minutes, the
// jobs and what holds them up, the plugin modules stored, the pipelines
// and their lag, and the dead letters with their errors.
//
// Pages are rendered on the server with html/template, so they read
// without JavaScript; a small embedded script refreshes them every 2 s
// when it runs. Charts are SVG drawn by the server from samples the
// console keeps in memory (Run takes them). Everything shown comes from a
// Backend; ClientBackend is the real one, a client.Client and the plugin
// store.
//
//	con, err := console.New(console.Config{Backend: console.NewClientBackend(c, js)})
//	if err != nil { ... }
//	go con.Run(ctx) // samples until ctx ends
//	http.Handle("/", con)
//
// A console is read-only unless Config.Admin is set: then it offers to
// cancel jobs and replay dead letters, and accepts those POSTs (from its
// own pages only: cross-origin requests are refused).
package console
