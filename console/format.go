package console

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

// funcs are the templates' functions.
var funcs = template.FuncMap{
	"count":    count,
	"rate":     rate,
	"bytes":    byteSize,
	"pct":      pct,
	"pctw":     pctWidth,
	"dur":      shortDuration,
	"latency":  latency,
	"ago":      ago,
	"clock":    clock,
	"short":    shortDigest,
	"colour":   colour,
	"healthOf": healthClass,
}

// count formats an integer n with groupings: 1234567 → "1,234,567".
func count(n any) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// rate formats a per-second figure with a k/M suffix: 1234.5 → "1.23k".
func rate(f float64) string {
	switch a := math.Abs(f); {
	case a >= 1e6:
		return trim(f/1e6, 2) + "M"
	case a >= 1e3:
		return trim(f/1e3, 2) + "k"
	case a >= 100 || f == math.Trunc(f):
		return strconv.FormatFloat(f, 'f', 0, 64)
	case a >= 10:
		return trim(f, 1)
	default:
		return trim(f, 2)
	}
}

// trim formats f with up to prec decimals, without trailing zeros.
func trim(f float64, prec int) string {
	s := strconv.FormatFloat(f, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// byteSize formats a size in bytes: 1536 → "1.5 KiB".
func byteSize(n any) string {
	var f float64
	switch v := n.(type) {
	case int:
		f = float64(v)
	case int64:
		f = float64(v)
	case uint64:
		f = float64(v)
	}
	for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
		if math.Abs(f) < 1024 || u == "GiB" {
			if u == "B" {
				return strconv.FormatFloat(f, 'f', 0, 64) + " B"
			}
			return trim(f, 1) + " " + u
		}
		f /= 1024
	}
	return ""
}

// pct formats a fraction as a percentage: 0.123 → "12%".
func pct(f float64) string {
	switch {
	case f > 0 && f < 0.01:
		return "<1%"
	default:
		return strconv.FormatFloat(math.Round(f*100), 'f', 0, 64) + "%"
	}
}

// pctWidth is a CSS width for a bar filled to fraction f (0..1).
func pctWidth(f float64) template.CSS {
	if !(f > 0) {
		f = 0
	}
	return template.CSS(strconv.FormatFloat(math.Min(f, 1)*100, 'f', 1, 64) + "%")
}

// shortDuration formats d to two units at most: "1m30s", "12s", "250ms".
func shortDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		if d < 10*time.Second {
			return trim(d.Seconds(), 1) + "s"
		}
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		m, s := int(d.Minutes()), int(d.Seconds())%60
		if s == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%02ds", m, s)
	case d < 48*time.Hour:
		h, m := int(d.Hours()), int(d.Minutes())%60
		return fmt.Sprintf("%dh%02dm", h, m)
	default:
		return strconv.Itoa(int(d.Hours()/24)) + "d"
	}
}

// latency formats a latency with a precision that suits it.
func latency(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Microsecond:
		return "<1µs"
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < time.Second:
		return trim(float64(d)/float64(time.Millisecond), 1) + "ms"
	default:
		return shortDuration(d)
	}
}

// ago says how long before now t was: "12s ago"; "—" for a zero t.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "just now"
	}
	return shortDuration(d.Truncate(time.Second)) + " ago"
}

// clock formats t as UTC date and time, for title attributes.
func clock(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// shortDigest shortens "sha256:abcdef…" to its first 12 hex digits.
func shortDigest(d string) string {
	_, hex, ok := strings.Cut(d, ":")
	if !ok {
		hex = d
	}
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}
