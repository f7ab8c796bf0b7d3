package churn

import (
	"context"
	"testing"
)

// BenchmarkChurn measures connections per second for each close mode with
// the built-in server, b.N connections per run.
func BenchmarkChurn(b *testing.B) {
	for _, mode := range []Close{CloseServer, CloseClient} {
		b.Run(string(mode), func(b *testing.B) {
			res, err := Run(context.Background(), Config{Connections: b.N, Concurrency: 4, Close: mode})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.PerSecond, "conn/s")
		})
	}
}
