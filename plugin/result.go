package plugin

// Result is what a plugin made of one record: a new value, "dropped" (the
// record is filtered out), or — in a batch — a per-record error.
type Result struct {
	// Value is the record's new value. It may alias the input record.
	Value []byte
	// Dropped reports that the plugin filtered the record out.
	Dropped bool
	// Err is the record's error. A Plugin reports a failure as the error of
	// Process; batch processing records it here, so a BatchResult holds
	// exactly one Result per input record.
	Err error
}

// Value returns a Result carrying v.
func Value(v []byte) Result { return Result{Value: v} }

// Drop returns a Result that filters the record out.
func Drop() Result { return Result{Dropped: true} }

// Fail returns a Result carrying the per-record error err.
func Fail(err error) Result { return Result{Err: err} }

// OK reports whether r is not an error.
func (r Result) OK() bool { return r.Err == nil }
