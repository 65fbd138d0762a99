package console

import (
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// palette colours chart series; a name always gets the same colour, on
// every chart and page.
var palette = []string{"#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"}

// colour returns name's colour from the palette.
func colour(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return palette[h.Sum32()%uint32(len(palette))]
}

// chart is a line chart over time, ready for the "chart" template: every
// coordinate is computed here, the template only places them.
type chart struct {
	Title string
	// W and H are the SVG's size; the plot area is [Left, Right] ×
	// [Top, Bottom].
	W, H                     int
	Left, Right, Top, Bottom float64
	// YLabelX, XTickEnd and XLabelY place the axis labels and marks,
	// MidX and MidY the message of an empty chart.
	YLabelX, XTickEnd, XLabelY, MidX, MidY float64
	YTicks, XTicks                         []tick
	Series                                 []chartSeries
	// Empty says why there is nothing to draw ("" when there is).
	Empty string
}

// tick is an axis mark at Pos (y for YTicks, x for XTicks).
type tick struct {
	Pos   float64
	Label string
}

// chartSeries is one line; Paths are its polylines' points (a gap in the
// samples breaks the line).
type chartSeries struct {
	Name, Colour string
	Paths        []string
	// Last is the latest value, formatted, for the legend.
	Last string
}

// tickSteps are the steps of the time axis, the smallest that gives at
// most 10 ticks is taken.
var tickSteps = []time.Duration{5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour}

// span is the time a chart covers: from the oldest sample (at least
// minSpan) up to window, so that a console just started shows what it
// has rather than a long empty axis.
func span(now time.Time, samples []sample, window time.Duration) time.Duration {
	const minSpan = 2 * time.Minute
	if len(samples) == 0 {
		return min(minSpan, window)
	}
	d := now.Sub(samples[0].At)
	return min(max(d.Round(time.Minute)+time.Minute, minSpan), window)
}

// point is one value of a series at a time.
type point struct {
	At time.Time
	V  float64
}

// chartSize is every chart's size in SVG units (it scales to its box).
const (
	chartW, chartH = 640, 220
	padLeft        = 56
	padRight       = 16
	padTop         = 14
	padBottom      = 30
)

// lineChart draws series (by name) over the window ending at now, their
// values formatted by format; points more than gap apart are not joined.
func lineChart(title string, now time.Time, window, gap time.Duration, series map[string][]point, format func(float64) string) *chart {
	c := &chart{Title: title, W: chartW, H: chartH, Left: padLeft, Right: chartW - padRight, Top: padTop, Bottom: chartH - padBottom}
	c.YLabelX, c.XTickEnd, c.XLabelY = c.Left-8, c.Bottom+5, c.Bottom+20
	c.MidX, c.MidY = (c.Left+c.Right)/2, (c.Top+c.Bottom)/2
	from := now.Add(-window)
	names := make([]string, 0, len(series))
	top := 0.0
	for name, pts := range series {
		seen := false
		for _, p := range pts {
			if !p.At.Before(from) {
				top, seen = max(top, p.V), true
			}
		}
		if seen {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	step, top := niceScale(top, 4)
	for v := 0.0; v <= top+step/2; v += step {
		c.YTicks = append(c.YTicks, tick{Pos: c.y(v, top), Label: format(v)})
	}
	// Ticks at a round step, no more than 10, labelled by how long ago.
	every := tickSteps[len(tickSteps)-1]
	for _, d := range tickSteps {
		if window/d <= 10 {
			every = d
			break
		}
	}
	for ago := time.Duration(0); ago <= window; ago += every {
		label := "now"
		if ago > 0 {
			label = "−" + shortDuration(ago)
		}
		c.XTicks = append(c.XTicks, tick{Pos: c.x(now.Add(-ago), from, window), Label: label})
	}
	if len(names) == 0 {
		c.Empty = "no samples yet"
		return c
	}
	for _, name := range names {
		s := chartSeries{Name: name, Colour: colour(name)}
		var b strings.Builder
		var last time.Time
		flush := func() {
			if b.Len() > 0 {
				s.Paths = append(s.Paths, b.String())
				b.Reset()
			}
		}
		for _, p := range series[name] {
			if p.At.Before(from) {
				continue
			}
			if !last.IsZero() && p.At.Sub(last) > gap {
				flush()
			}
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(num(c.x(p.At, from, window)) + "," + num(c.y(p.V, top)))
			last = p.At
			s.Last = format(p.V)
		}
		flush()
		c.Series = append(c.Series, s)
	}
	return c
}

// x places t in the plot area.
func (c *chart) x(t, from time.Time, window time.Duration) float64 {
	f := float64(t.Sub(from)) / float64(window)
	return c.Left + f*(c.Right-c.Left)
}

// y places v in the plot area, with top at its top.
func (c *chart) y(v, top float64) float64 {
	return c.Bottom - v/top*(c.Bottom-c.Top)
}

// num formats a coordinate.
func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// niceScale returns a round step and the axis top (a multiple of it, at
// least max) for about ticks intervals from 0 to max.
func niceScale(maxV float64, ticks int) (step, top float64) {
	if !(maxV > 0) || math.IsInf(maxV, 0) {
		return 1, float64(ticks)
	}
	raw := maxV / float64(ticks)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / mag; {
	case f <= 1:
		step = mag
	case f <= 2:
		step = 2 * mag
	case f <= 2.5:
		step = 2.5 * mag
	case f <= 5:
		step = 5 * mag
	default:
		step = 10 * mag
	}
	return step, math.Ceil(maxV/step-1e-9) * step
}
