package liveview

import (
	"math"
	"strconv"
	"strings"
)

// eighths are the block characters a column of a chart is drawn with: a
// cell holds 0 to 8 eighths of its height.
var eighths = []rune{' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'}

// columns draws values as a column chart width cells wide and height rows
// high, the newest value at the right, scaled to top (the largest value
// when top is 0). Fewer values than width leave the left blank; more keep
// the newest. A value above zero is drawn at least one eighth high, so
// that a small population never looks like none.
func columns(values []float64, width, height int, top float64) []string {
	if width <= 0 || height <= 0 {
		return nil
	}
	if len(values) > width {
		values = values[len(values)-width:]
	}
	if top <= 0 {
		for _, v := range values {
			top = max(top, v)
		}
	}
	levels := make([]int, width)
	pad := width - len(values)
	for i, v := range values {
		l := 0
		if top > 0 && v > 0 {
			l = max(1, int(math.Round(v/top*float64(height*8))))
		}
		levels[pad+i] = min(l, height*8)
	}
	rows := make([]string, height)
	var b strings.Builder
	for r := range height {
		b.Reset()
		base := (height - 1 - r) * 8
		for _, l := range levels {
			b.WriteRune(eighths[min(8, max(0, l-base))])
		}
		rows[r] = b.String()
	}
	return rows
}

// sparkline is a one-row column chart.
func sparkline(values []float64, width int) string {
	if r := columns(values, width, 1, 0); len(r) == 1 {
		return r[0]
	}
	return ""
}

// axisWidth is the margin of a chart's scale: "150k│".
const axisWidth = 5

// axisChart draws a column chart with its scale in a margin on the left:
// the top value on the first row and 0 on the last.
func axisChart(values []float64, width, height int) []string {
	top := 0.0
	for _, v := range values {
		top = max(top, v)
	}
	top = niceCeil(top)
	rows := columns(values, width-axisWidth, height, top)
	for i := range rows {
		label := ""
		switch {
		case i == 0:
			label = axisLabel(top)
		case i == len(rows)-1:
			label = "0"
		}
		rows[i] = padLeft(label, axisWidth-1) + "│" + rows[i]
	}
	return rows
}

// axisLabel writes a scale's top in at most 4 cells: 800, 1.5k, 150k, 2M.
func axisLabel(v float64) string {
	for _, u := range []struct {
		div    float64
		suffix string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if v >= u.div {
			x := v / u.div
			if x < 10 && x != math.Trunc(x) {
				return strconv.FormatFloat(x, 'f', 1, 64) + u.suffix
			}
			return strconv.FormatFloat(math.Round(x), 'f', 0, 64) + u.suffix
		}
	}
	return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
}

// niceCeil rounds a chart's top up to a round number (1, 1.5, 2, 3, 4,
// 5, 6 or 8 times a power of ten), so that the scale reads easily and
// does not change with every sample.
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 3, 4, 5, 6, 8} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func padLeft(s string, w int) string {
	if n := w - len([]rune(s)); n > 0 {
		return strings.Repeat(" ", n) + s
	}
	return s
}
