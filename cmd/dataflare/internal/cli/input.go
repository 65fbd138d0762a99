package cli

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dataflare/dataflare/batch"
	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/plugin"
)

// Input formats of submit.
const (
	formatLines = "lines"
	formatJSONL = "jsonl"
)

// inputReadSize is the read buffer of an input; lines longer than it are
// put together in a separate buffer, up to the line limit.
const inputReadSize = 64 << 10

// maxLineLen is the longest input line read in a format. A line that is
// longer is not kept in memory: its record gets an error. A lines value can
// be as long as a record value; a JSON line needs room for escapes or
// base64.
func maxLineLen(format string) int {
	if format == formatJSONL {
		return 3*batch.DefaultLimits.MaxValueSize + batch.DefaultLimits.MaxKeySize*2
	}
	return batch.DefaultLimits.MaxValueSize
}

// inputReader turns an input stream, one record per line, into a job's
// Source. It reads lazily, as the job asks for records, so memory stays flat
// however large the input. A line it cannot make a record of (too long,
// malformed JSON) still counts as a record: the job gets an empty record in
// its place, and the line's error is kept in bad until the output replaces
// that record's result with it. So every input line gets exactly one output
// line.
type inputReader struct {
	r       *bufio.Reader
	format  string
	maxLine int

	buf  []byte
	line uint64 // number of the last line read, from 1

	bytesRead atomic.Int64
	eof       atomic.Bool
	bad       badLines
}

func newInputReader(r io.Reader, format string) *inputReader {
	return &inputReader{r: bufio.NewReaderSize(r, inputReadSize), format: format, maxLine: maxLineLen(format)}
}

// errLineTooLong marks a line over the limit; its bytes were skipped.
var errLineTooLong = errors.New("line too long")

// next returns the next line without its line ending ("\n" or "\r\n"),
// errLineTooLong for a line over the limit (its bytes skipped), io.EOF at
// the end, or the reader's error. The line is valid until the next call.
func (in *inputReader) next() ([]byte, error) {
	in.buf = in.buf[:0]
	var n int
	tooLong := false
	for {
		chunk, err := in.r.ReadSlice('\n')
		n += len(chunk)
		if !tooLong {
			if len(in.buf)+len(chunk) > in.maxLine+2 { // +2: room for "\r\n"
				tooLong, in.buf = true, in.buf[:0]
			} else {
				in.buf = append(in.buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if n == 0 {
				return nil, io.EOF
			}
		case err != nil:
			in.bytesRead.Add(int64(n))
			return nil, err
		}
		in.bytesRead.Add(int64(n))
		in.line++
		if tooLong {
			return nil, errLineTooLong
		}
		line := bytes.TrimSuffix(in.buf, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) > in.maxLine {
			return nil, errLineTooLong
		}
		return line, nil
	}
}

// source returns the Source of the input's records.
func (in *inputReader) source() client.Source {
	return func(yield func(plugin.Record, error) bool) {
		for index := uint64(0); ; index++ {
			line, err := in.next()
			var rec plugin.Record
			switch {
			case errors.Is(err, io.EOF):
				in.eof.Store(true)
				return
			case errors.Is(err, errLineTooLong):
				err = fmt.Errorf("line %d: longer than the limit of %d bytes", in.line, in.maxLine)
			case err != nil:
				yield(plugin.Record{}, fmt.Errorf("read line %d: %w", in.line+1, err))
				return
			case in.format == formatJSONL:
				rec, err = parseJSONRecord(line)
				if err != nil {
					err = fmt.Errorf("line %d: %w", in.line, err)
				}
			default:
				rec.Value = line
			}
			if err != nil {
				in.bad.add(index, err.Error())
				rec = plugin.Record{}
			}
			if !yield(rec, nil) {
				return
			}
		}
	}
}

// badLines holds the errors of the input lines not yet written out, by
// record index.
type badLines struct {
	n  atomic.Int64
	mu sync.Mutex
	m  map[uint64]string
}

func (b *badLines) add(index uint64, msg string) {
	b.mu.Lock()
	if b.m == nil {
		b.m = make(map[uint64]string)
	}
	b.m[index] = msg
	b.mu.Unlock()
	b.n.Add(1)
}

// take returns and forgets the error of the record at index, if any.
func (b *badLines) take(index uint64) (string, bool) {
	if b.n.Load() == 0 {
		return "", false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	msg, ok := b.m[index]
	if ok {
		delete(b.m, index)
		b.n.Add(-1)
	}
	return msg, ok
}

// jsonRecord is one line of jsonl input.
type jsonRecord struct {
	Key         *string    `json:"key"`
	KeyBase64   *string    `json:"key_base64"`
	Value       *string    `json:"value"`
	ValueBase64 *string    `json:"value_base64"`
	Timestamp   *time.Time `json:"timestamp"`
}

// parseJSONRecord parses one jsonl input line: an object with "value" (a
// string) or "value_base64" (standard base64), and optionally "key" or
// "key_base64" and "timestamp" (RFC 3339). Other fields are ignored.
func parseJSONRecord(line []byte) (plugin.Record, error) {
	var jr jsonRecord
	if len(bytes.TrimSpace(line)) == 0 {
		return plugin.Record{}, errors.New("empty line: want a JSON object with \"value\" or \"value_base64\"")
	}
	if err := json.Unmarshal(line, &jr); err != nil {
		return plugin.Record{}, fmt.Errorf("malformed JSON: %s", jsonErrorText(err))
	}
	var rec plugin.Record
	var err error
	if rec.Value, err = stringOrBase64("value", jr.Value, jr.ValueBase64); err != nil {
		return plugin.Record{}, err
	}
	if rec.Value == nil {
		return plugin.Record{}, errors.New(`no "value" or "value_base64"`)
	}
	if rec.Key, err = stringOrBase64("key", jr.Key, jr.KeyBase64); err != nil {
		return plugin.Record{}, err
	}
	if jr.Timestamp != nil {
		rec.Timestamp = *jr.Timestamp
	}
	return rec, nil
}

// stringOrBase64 returns the bytes of a field given as a string or as
// base64, nil when neither is there.
func stringOrBase64(name string, s, b64 *string) ([]byte, error) {
	switch {
	case s != nil && b64 != nil:
		return nil, fmt.Errorf("both %q and %q", name, name+"_base64")
	case s != nil:
		return append([]byte{}, *s...), nil
	case b64 != nil:
		b, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, fmt.Errorf("%s_base64: %v", name, err)
		}
		return b, nil
	}
	return nil, nil
}

// jsonErrorText words a decoding error without the package's prefix.
func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s, not a JSON %s", te.Field, jsonTypeName(te.Type.String()), te.Value)
		}
		return fmt.Sprintf("want a JSON object, not a JSON %s", te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%v (at byte %d)", se, se.Offset)
	}
	return err.Error()
}

func jsonTypeName(goType string) string {
	if goType == "time.Time" {
		return "an RFC 3339 time string"
	}
	return "a string"
}
