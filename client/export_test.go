package client

// SetBatchKey makes the batch ids of the jobs submitted from now on use
// key, and returns a function that restores random keys.
func SetBatchKey(key string) (restore func()) {
	old := newBatchKey
	newBatchKey = func() string { return key }
	return func() { newBatchKey = old }
}
