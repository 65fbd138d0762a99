package client

import "time"

// SetBatchKey makes the batch ids of the jobs submitted from now on use
// key, and returns a function that restores random keys.
func SetBatchKey(key string) (restore func()) {
	old := newBatchKey
	newBatchKey = func() string { return key }
	return func() { newBatchKey = old }
}

// SetLease makes the jobs submitted from now on report their progress
// every d, and returns a function that restores the default.
func SetLease(d time.Duration) (restore func()) {
	old := leaseEvery
	leaseEvery = d
	return func() { leaseEvery = old }
}

// Reopened returns how many times j read its results again through a new
// ordered consumer.
func Reopened(j *Job) uint64 { return j.reopened.Load() }
