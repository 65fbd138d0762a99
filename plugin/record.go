package plugin

import "time"

// Header is one record header. Key and Value may alias the buffer the record
// was decoded from.
type Header struct {
	Key   []byte
	Value []byte
}

// Record is one unit of data handed to a plugin. Its byte slices may alias a
// larger buffer (zero copy): they are valid only for the duration of the call
// that received them and must not be modified.
type Record struct {
	// Key is the record's optional key.
	Key []byte
	// Value is the record's payload.
	Value []byte
	// Headers are optional metadata pairs, in order.
	Headers []Header
	// Timestamp is when the record was produced; the zero Time means unset.
	Timestamp time.Time
}

// Size reports the number of payload bytes in r: key, value and headers.
func (r *Record) Size() int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Header returns the value of the first header named key, and whether there
// was one.
func (r *Record) Header(key string) ([]byte, bool) {
	for _, h := range r.Headers {
		if string(h.Key) == key {
			return h.Value, true
		}
	}
	return nil, false
}
