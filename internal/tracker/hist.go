package tracker

import "math/bits"

// Hist is a log-linear histogram of durations in nanoseconds: 16 buckets
// per power of two, so any quantile it reports is within 1/16 (6%) of
// the true value, in a fixed 8 KiB with no allocation per sample. Max is
// exact.
type Hist struct {
	counts [64 * subBuckets]uint64
	n      uint64
	max    uint64
	sum    uint64
}

const (
	subBits    = 4
	subBuckets = 1 << subBits
)

func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	exp := bits.Len64(v) - 1 // v in [2^exp, 2^(exp+1))
	mant := (v >> (exp - subBits)) & (subBuckets - 1)
	return (exp-subBits+1)*subBuckets + int(mant)
}

// bucketMid returns a representative value of bucket i (its midpoint).
func bucketMid(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	exp := i/subBuckets + subBits - 1
	mant := uint64(i % subBuckets)
	lo := (uint64(1) << exp) | mant<<(exp-subBits)
	width := uint64(1) << (exp - subBits)
	return lo + width/2
}

// Add records one duration.
func (h *Hist) Add(ns uint64) {
	h.counts[bucketOf(ns)]++
	h.n++
	h.sum += ns
	if ns > h.max {
		h.max = ns
	}
}

// Count returns the number of samples.
func (h *Hist) Count() uint64 { return h.n }

// Max returns the largest sample.
func (h *Hist) Max() uint64 { return h.max }

// Mean returns the average sample, 0 when empty.
func (h *Hist) Mean() uint64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / h.n
}

// Quantile returns the q-quantile (0 < q <= 1), never more than Max.
func (h *Hist) Quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(bucketMid(i), h.max)
		}
	}
	return h.max
}

// Sum returns the total of all samples.
func (h *Hist) Sum() uint64 { return h.sum }

// BucketBoundsNs are the upper bounds, in nanoseconds, at which Summary
// counts samples for histograms exported elsewhere (Prometheus): from
// 100 µs (loopback handshakes) to an hour (leaked CLOSE_WAIT sockets).
var BucketBoundsNs = []uint64{
	100e3, 1e6, 10e6, 100e6, 500e6,
	1e9, 5e9, 10e9, 30e9, 60e9, 120e9, 300e9, 600e9, 1800e9, 3600e9,
}

// Cumulative returns, for each bound (ascending, in ns), how many samples
// are at most that bound. A bucket of the histogram that straddles a bound
// counts above it: a count is never more than the truth, and less only by
// samples within 1/16 below the bound (TIME_WAIT's 60.0x s lives stay
// above a 60 s bound, as they should).
func (h *Hist) Cumulative(bounds []uint64) []uint64 {
	out := make([]uint64, len(bounds))
	var seen uint64
	i := 0
	for j, le := range bounds {
		for ; i < len(h.counts) && bucketTop(i) <= le; i++ {
			seen += h.counts[i]
		}
		out[j] = seen
	}
	return out
}

// bucketTop returns the largest value bucket i holds.
func bucketTop(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	exp := i/subBuckets + subBits - 1
	if exp >= 64 {
		return ^uint64(0) // past any uint64: never filled
	}
	mant := uint64(i % subBuckets)
	lo := (uint64(1) << exp) | mant<<(exp-subBits)
	return lo + (uint64(1) << (exp - subBits)) - 1
}
