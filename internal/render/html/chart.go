package html

import (
	"fmt"
	"math"
	"strings"

	"github.com/tcptrace/tcptrace/internal/engine"
	"github.com/tcptrace/tcptrace/internal/human"
	"github.com/tcptrace/tcptrace/internal/report"
)

// Chart geometry, in SVG user units: the viewBox is chartW x chartH and
// scales with the page.
const (
	chartW  = 640
	chartH  = 200
	padL    = 64 // room for y labels
	padR    = 16
	padT    = 14
	padB    = 36 // x labels and the axis title
	plotW   = chartW - padL - padR
	plotH   = chartH - padT - padB
	maxTick = 6
)

// chart is one line chart: a title that says what and in which unit, the
// axes with their ticks, and the line, labelled at its end.
type chart struct {
	ID, Title, Unit, XUnit string
	Class                  string // colour of the line
	W, H                   int
	X0, X1, Y0, Y1         float64 // plot area
	Path                   string
	Area                   string
	XTicks, YTicks         []tick
	Last                   string  // the value at the end, shown beside the line
	LastX, LastY           float64 // where
	Peak                   string
	Empty                  bool
}

type tick struct {
	Pos   float64
	Label string
}

type point struct{ t, v float64 }

// series builds the charts from the snapshot's history, ending with the
// final numbers of the report.
func (p *page) series(snap *engine.Snapshot) {
	r := snap.Report
	var startNs uint64
	if snap.Start != nil {
		startNs = snap.Start.StartNs
	}
	hist := snap.History
	at := func(s engine.Sample) float64 { return float64(s.TimeNs-min(s.TimeNs, startNs)) / 1e9 }
	pop := func(get func(engine.Sample) int64, final int64) []point {
		pts := []point{{0, 0}}
		for _, s := range hist {
			pts = append(pts, point{at(s), float64(get(s))})
		}
		if snap.Final && (len(hist) == 0 || r.DurationS > at(hist[len(hist)-1])) {
			pts = append(pts, point{r.DurationS, float64(final)})
		}
		return pts
	}
	var transitions uint64
	for _, n := range r.Transitions {
		transitions += n
	}
	rate := func(get func(engine.Sample) uint64, final uint64) []point {
		var pts []point
		prevT, prevV := 0.0, uint64(0)
		add := func(t float64, v uint64) {
			if t > prevT {
				pts = append(pts, point{t, float64(v-min(v, prevV)) / (t - prevT)})
				prevT, prevV = t, v
			}
		}
		for _, s := range hist {
			add(at(s), get(s))
		}
		if snap.Final {
			add(r.DurationS, final)
		}
		return pts
	}
	if len(hist) == 0 {
		p.NoSeries = "No samples over time: the trace ended before its first interval. The numbers below are the final ones."
	}
	p.Populations = []*chart{
		newChart("chart-time-wait", "TIME_WAIT sockets", "sockets", "tw",
			pop(func(s engine.Sample) int64 { return s.TimeWait }, r.TimeWait.Current)),
		newChart("chart-orphans", "FIN_WAIT2 orphans (closed here, no FIN from the peer yet)", "sockets", "orphan",
			pop(func(s engine.Sample) int64 { return s.Orphans }, r.FinWait2Orphans.Current)),
		newChart("chart-close-wait", "CLOSE_WAIT sockets (the peer closed, the application has not)", "sockets", "cw",
			pop(func(s engine.Sample) int64 { return s.CloseWait }, int64(r.CloseWait.Current))),
	}
	p.Rates = []*chart{
		newChart("chart-transitions", "TCP state transitions per second", "per second", "rate",
			rate(func(s engine.Sample) uint64 { return s.Transitions }, transitions)),
		newChart("chart-time-wait-rate", "New TIME_WAIT sockets per second", "per second", "tw",
			rate(func(s engine.Sample) uint64 { return s.TimeWaitCreated }, r.TimeWait.Created)),
	}
	if r.PortExhaustion.ConnectFailures > 0 {
		p.Rates = append(p.Rates, newChart("chart-connect-failures", "connect() failures (EADDRNOTAVAIL) per second", "per second", "cw",
			rate(func(s engine.Sample) uint64 { return s.ConnectFailures }, r.PortExhaustion.ConnectFailures)))
	}
}

func newChart(id, title, unit, class string, pts []point) *chart {
	c := &chart{ID: id, Title: title, Unit: unit, XUnit: "time since tracing began", Class: class,
		W: chartW, H: chartH, X0: padL, X1: padL + plotW, Y0: padT, Y1: padT + plotH}
	if len(pts) < 2 {
		c.Empty = true
		return c
	}
	tMax := pts[len(pts)-1].t
	vMax := 0.0
	for _, p := range pts {
		vMax = max(vMax, p.v)
	}
	xStep := niceTimeStep(tMax)
	tTop := math.Max(tMax, xStep)
	yStep := niceStep(vMax)
	yTop := math.Max(yStep, math.Ceil(vMax/yStep)*yStep)
	x := func(t float64) float64 { return padL + plotW*t/tTop }
	y := func(v float64) float64 { return padT + plotH*(1-v/yTop) }
	for t := 0.0; t <= tTop+1e-9; t += xStep {
		c.XTicks = append(c.XTicks, tick{x(t), timeLabel(t)})
	}
	for v := 0.0; v <= yTop+1e-9; v += yStep {
		c.YTicks = append(c.YTicks, tick{y(v), valueLabel(v, yStep)})
	}
	var b strings.Builder
	for i, p := range pts {
		if i == 0 {
			fmt.Fprintf(&b, "M%.1f,%.1f", x(p.t), y(p.v))
		} else {
			fmt.Fprintf(&b, " L%.1f,%.1f", x(p.t), y(p.v))
		}
	}
	c.Path = b.String()
	c.Area = fmt.Sprintf("%s L%.1f,%.1f L%.1f,%.1f Z", c.Path, x(pts[len(pts)-1].t), y(0), x(pts[0].t), y(0))
	last := pts[len(pts)-1]
	c.Last = valueLabel(last.v, 1)
	c.LastX, c.LastY = x(last.t), y(last.v)
	c.Peak = valueLabel(vMax, 1)
	return c
}

// niceStep picks a step of 1, 2 or 5 times a power of ten that cuts
// [0, top] into at most maxTick parts.
func niceStep(top float64) float64 {
	if top <= 0 {
		return 1
	}
	raw := top / (maxTick - 1)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if s := m * mag; s >= raw {
			return math.Max(s, 1)
		}
	}
	return 10 * mag
}

// niceTimeStep picks a step in seconds a person counts in.
func niceTimeStep(top float64) float64 {
	for _, s := range []float64{0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400} {
		if top/s <= maxTick {
			return s
		}
	}
	return math.Ceil(top/maxTick/86400) * 86400
}

func timeLabel(sec float64) string {
	switch {
	case sec == 0:
		return "0"
	case sec < 1:
		return fmt.Sprintf("%.1f s", sec)
	case sec < 120:
		return fmt.Sprintf("%.0f s", sec)
	case sec < 7200:
		m := sec / 60
		if m == math.Trunc(m) {
			return fmt.Sprintf("%.0f min", m)
		}
		return fmt.Sprintf("%.1f min", m)
	}
	return fmt.Sprintf("%.1f h", sec/3600)
}

func valueLabel(v, step float64) string {
	if step < 1 && v != math.Trunc(v) {
		return fmt.Sprintf("%.1f", v)
	}
	return human.Count(int64(math.Round(v)))
}

// lifeRow is one state's lifetime summary.
type lifeRow struct {
	State string
	D     report.Durations
}

// lifeChart shows each state's lifetime percentiles on one log scale:
// a bar from p50 to p90, a tick at p99, a dot at the maximum.
type lifeChart struct {
	W, H, X0, X1 float64
	Rows         []lifeBar
	Ticks        []tick
	AxisY        float64
}

type lifeBar struct {
	State              string
	Y                  float64
	P50, P90, P99, Max float64
	Label              string
}

const (
	lifeRowH  = 26
	lifeLeft  = 190
	lifeRight = 24
)

func newLifeChart(rows []lifeRow) *lifeChart {
	if len(rows) == 0 {
		return nil
	}
	lo, hi := math.Inf(1), 0.0
	for _, r := range rows {
		lo = math.Min(lo, math.Max(r.D.P50, 0.001))
		hi = math.Max(hi, r.D.Max)
	}
	loDec := math.Floor(math.Log10(lo))
	hiDec := math.Ceil(math.Log10(math.Max(hi, lo*10)))
	if hiDec <= loDec {
		hiDec = loDec + 1
	}
	c := &lifeChart{W: chartW, X0: lifeLeft, X1: chartW - lifeRight}
	x := func(ms float64) float64 {
		ms = math.Max(ms, math.Pow(10, loDec))
		return c.X0 + (c.X1-c.X0)*(math.Log10(ms)-loDec)/(hiDec-loDec)
	}
	for i, r := range rows {
		d := r.D
		c.Rows = append(c.Rows, lifeBar{State: r.State, Y: float64(padT + i*lifeRowH),
			P50: x(d.P50), P90: x(d.P90), P99: x(d.P99), Max: x(d.Max),
			Label: fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s", human.Millis(d.P50), human.Millis(d.P90),
				human.Millis(d.P99), human.Millis(d.Max))})
	}
	c.AxisY = float64(padT + len(rows)*lifeRowH)
	for dec := loDec; dec <= hiDec; dec++ {
		c.Ticks = append(c.Ticks, tick{x(math.Pow(10, dec)), human.Millis(math.Pow(10, dec))})
	}
	c.H = c.AxisY + 34
	return c
}
