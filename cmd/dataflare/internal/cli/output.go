package cli

import (
	"bufio"
	"encoding/base64"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/dataflare/dataflare/plugin"
)

// outputFlushEvery bounds how long a written result may wait in the output
// buffer while results keep coming.
const outputFlushEvery = 200 * time.Millisecond

// resultWriter writes submit's output: one JSON object per line, per input
// record, in input order:
//
//	{"index":N,"value":"..."}         the record's new value (UTF-8)
//	{"index":N,"value_base64":"..."}  the same, when the value is not UTF-8
//	{"index":N,"dropped":true}        the plugin filtered the record out
//	{"index":N,"error":"..."}         the record's error
type resultWriter struct {
	w         *bufio.Writer
	buf       []byte
	lastFlush time.Time
}

func newResultWriter(w io.Writer) *resultWriter {
	return &resultWriter{w: bufio.NewWriterSize(w, 64<<10), lastFlush: time.Now()}
}

// write writes the line of the record at index: its error message errMsg
// when hasErr, else its result r.
func (o *resultWriter) write(index uint64, r plugin.Result, errMsg string, hasErr bool) error {
	b := append(o.buf[:0], `{"index":`...)
	b = strconv.AppendUint(b, index, 10)
	switch {
	case hasErr:
		b = append(b, `,"error":`...)
		b = appendJSONString(b, errMsg)
	case r.Err != nil:
		b = append(b, `,"error":`...)
		b = appendJSONString(b, r.Err.Error())
	case r.Dropped:
		b = append(b, `,"dropped":true`...)
	case utf8.Valid(r.Value):
		b = append(b, `,"value":`...)
		b = appendJSONString(b, r.Value)
	default:
		b = append(b, `,"value_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Value)
		b = append(b, '"')
	}
	b = append(b, "}\n"...)
	o.buf = b
	if _, err := o.w.Write(b); err != nil {
		return err
	}
	if time.Since(o.lastFlush) >= outputFlushEvery {
		return o.flush()
	}
	return nil
}

// flush writes out what is buffered.
func (o *resultWriter) flush() error {
	o.lastFlush = time.Now()
	return o.w.Flush()
}

const hexDigits = "0123456789abcdef"

// jsonSafe tells the ASCII bytes a JSON string holds as they are.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// decodeRune is utf8.DecodeRune for a string or a byte slice.
func decodeRune[T string | []byte](s T) (rune, int) {
	switch v := any(s).(type) {
	case string:
		return utf8.DecodeRuneInString(v)
	case []byte:
		return utf8.DecodeRune(v)
	}
	return utf8.RuneError, 1
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does; unlike encoding/json, '<', '>' and '&' are
// left as they are.
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript; escape
		// them as encoding/json does.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
