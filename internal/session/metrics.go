package session

import (
	"github.com/tcptrace/tcptrace/internal/metrics"
)

// serveMetrics binds the --metrics address and serves an exporter there,
// which reads a snapshot every interval.
func serveMetrics(addr string) (*metrics.Server, *metrics.Exporter, error) {
	ln, err := metrics.Listen(addr)
	if err != nil {
		return nil, nil, err
	}
	x := metrics.New(metrics.Config{Version: Version})
	return metrics.Serve(ln, metrics.Registry(x)), x, nil
}
