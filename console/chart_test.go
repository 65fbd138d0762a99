package console

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dataflare/dataflare/client"
	"github.com/dataflare/dataflare/fleet"
)

func TestNiceScale(t *testing.T) {
	for _, tc := range []struct {
		max, step, top float64
	}{
		{0, 1, 4},
		{1, 0.25, 1},
		{7, 2, 8},
		{95, 25, 100},
		{1234, 500, 1500},
		{10000, 2500, 10000},
	} {
		step, top := niceScale(tc.max, 4)
		if step != tc.step || top != tc.top {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", tc.max, step, top, tc.step, tc.top)
		}
	}
}

func TestLineChartStaysInItsPlot(t *testing.T) {
	now := t0
	series := map[string][]point{
		"b": {{now.Add(-20 * time.Minute), 1e9}, {now.Add(-9 * time.Minute), 10}, {now.Add(-time.Minute), 40}, {now, 25}},
		"a": {{now.Add(-30 * time.Second), 3}, {now, 5}},
	}
	c := lineChart("t", now, 10*time.Minute, 3*time.Minute, series, rate)
	if c.Empty != "" || len(c.Series) != 2 || c.Series[0].Name != "a" {
		t.Fatalf("chart: empty %q, series %+v", c.Empty, c.Series)
	}
	// The point older than the window is left out: the axis tops at 40.
	if last := c.YTicks[len(c.YTicks)-1].Label; last != "40" {
		t.Errorf("top tick %q, want 40", last)
	}
	if got, want := len(c.XTicks), 11; got != want {
		t.Errorf("%d time ticks, want %d", got, want)
	}
	if c.XTicks[0].Label != "now" || c.XTicks[0].Pos != c.Right {
		t.Errorf("first time tick %+v, want now at %v", c.XTicks[0], c.Right)
	}
	// The gap between −9 min and −1 min breaks b's line in two.
	if got := len(c.Series[1].Paths); got != 2 {
		t.Errorf("b has %d lines, want 2: %q", got, c.Series[1].Paths)
	}
	for _, s := range c.Series {
		for _, path := range s.Paths {
			for _, xy := range strings.Fields(path) {
				x, y, _ := strings.Cut(xy, ",")
				fx, _ := strconv.ParseFloat(x, 64)
				fy, _ := strconv.ParseFloat(y, 64)
				if fx < c.Left || fx > c.Right || fy < c.Top || fy > c.Bottom {
					t.Errorf("%s: point %s outside the plot [%v,%v]×[%v,%v]", s.Name, xy, c.Left, c.Right, c.Top, c.Bottom)
				}
			}
		}
	}
	if c := lineChart("t", now, time.Minute, time.Second, nil, rate); c.Empty == "" {
		t.Error("a chart without samples does not say so")
	}
}

func TestHistoryKeepsTheLastSamples(t *testing.T) {
	h := newHistory(5, 2*time.Second)
	status := func(processed uint64) *fleet.Status {
		return &fleet.Status{
			Workers: []fleet.Worker{{Health: fleet.Healthy}, {Health: fleet.Dead}},
			Plugins: []fleet.Plugin{{Name: "upper", BatchSize: 50, Metrics: fleet.PluginMetrics{TotalProcessed: processed, Throughput: 7}}},
		}
	}
	lag := []client.Pipeline{{Name: "p", Owner: "o", Status: &client.PipelineStatus{Lag: 9}}}
	// Processed every 2 s: 100, 300, 250 (a worker's totals left), 450,
	// 650, 850, 1050.
	for i, n := range []uint64{100, 300, 250, 450, 650, 850, 1050} {
		h.add(t0.Add(time.Duration(i)*2*time.Second), status(n), lag)
	}
	s := h.samples()
	if len(s) != 5 {
		t.Fatalf("%d samples, want 5", len(s))
	}
	var rates []float64
	for i, x := range s {
		if want := t0.Add(time.Duration(i+2) * 2 * time.Second); !x.At.Equal(want) {
			t.Errorf("sample %d at %v, want %v", i, x.At, want)
		}
		rates = append(rates, x.Plugins["upper"].Rate)
		if x.Lags["o/p"] != 9 || x.Healthy != 1 || x.Workers != 2 {
			t.Errorf("sample %d: %+v", i, x)
		}
	}
	// 250 against 100 over 4 s; 450 against 100 over 6 s; then 4 samples
	// (8 s) back: 650−100, 850−300, 1050−250.
	if want := []float64{37.5, 350.0 / 6, 68.75, 68.75, 100}; !slices.Equal(rates, want) {
		t.Errorf("rates %v, want %v", rates, want)
	}
	if first := newHistory(2, time.Second); true {
		first.add(t0, status(5), nil)
		if r := first.samples()[0].Plugins["upper"].Rate; r != 7 {
			t.Errorf("first sample's rate %v, want the plugin's own throughput 7", r)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{count(uint64(1234567)), "1,234,567"},
		{count(-12), "-12"},
		{rate(1234.5), "1.23k"},
		{rate(2.5), "2.5"},
		{rate(40), "40"},
		{byteSize(int64(1536)), "1.5 KiB"},
		{byteSize(uint64(12)), "12 B"},
		{pct(0.123), "12%"},
		{pct(0.001), "<1%"},
		{shortDuration(90 * time.Second), "1m30s"},
		{shortDuration(1500 * time.Millisecond), "1.5s"},
		{latency(1500 * time.Microsecond), "1.5ms"},
		{shortDigest("sha256:0123456789abcdef"), "0123456789ab"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
