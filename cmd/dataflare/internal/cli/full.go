//go:build !client

package cli

// The full build: the commands that run a fleet (demo, dev, the daemons,
// bench) and manage plugins; `-tags client` leaves them out for a small,
// quick-starting binary of the commands that use one.
func init() {
	extraCommands = append(extraCommands, (*env).demoCmd, (*env).devCmd, (*env).coordinatorCmd, (*env).workerCmd)
}
