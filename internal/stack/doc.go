// Package stack runs the whole fleet in one process: an embedded
// nats-server with JetStream, a coordinator and workers. It is what
// `dataflare demo`, `dataflare dev` and `dataflare bench` stand on.
//
//	s, err := stack.Start(ctx, stack.Config{Listen: "127.0.0.1:0", Workers: 2})
//	if err != nil {
//		return err
//	}
//	defer s.Close() // workers drain, then the coordinator stops, then the server
//	nc, err := s.Conn("client")
//	c, err := client.New(nc)
//
// Close removes the temporary store unless Config.StoreDir named one.
package stack
