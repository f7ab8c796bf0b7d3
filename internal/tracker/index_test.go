package tracker

import (
	"math/rand/v2"
	"testing"
)

// TestSockIndex drives the index and a Go map with the same random
// inserts, updates and deletes, over keys that collide on purpose (aligned
// addresses, a small key space), through growth and shrinking.
func TestSockIndex(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 3))
		x := newSockIndex()
		model := map[uint64]uint32{}
		space := 16 + rng.IntN(1<<rng.IntN(17))
		key := func() uint64 {
			k := uint64(rng.IntN(space))
			if rng.IntN(3) == 0 {
				return k << 12 // slab-like alignment
			}
			return 0xffff888100000000 + k*0x800
		}
		for op := range 200_000 {
			k := key()
			switch r := rng.IntN(10); {
			case r < 5:
				v := uint32(op)
				x.put(k, v)
				model[k] = v
			case r < 9:
				x.del(k)
				delete(model, k)
			default:
				x.shrink()
			}
			if op%997 == 0 || op == 199_999 {
				if x.len() != len(model) {
					t.Fatalf("seed %d op %d: len %d, want %d", seed, op, x.len(), len(model))
				}
				for mk, mv := range model {
					if v, ok := x.get(mk); !ok || v != mv {
						t.Fatalf("seed %d op %d: get(%#x) = %d, %v; want %d", seed, op, mk, v, ok, mv)
					}
				}
			}
			if v, ok := x.get(k); ok != (model[k] == v && func() bool { _, in := model[k]; return in }()) {
				t.Fatalf("seed %d op %d: get(%#x) = %d, %v; model %v", seed, op, k, v, ok, model[k])
			}
		}
		// Emptied, a large index shrinks.
		for k := range model {
			x.del(k)
		}
		x.shrink()
		if x.len() != 0 || len(x.keys) > 1<<shrinkBits {
			t.Fatalf("seed %d: emptied index holds %d in %d slots", seed, x.len(), len(x.keys))
		}
	}
}

func TestSockIndexShrink(t *testing.T) {
	x := newSockIndex()
	const n = 200_000
	for i := range uint64(n) {
		x.put(0xffff888100000000+i*0x800, uint32(i))
	}
	grown := len(x.keys)
	for i := range uint64(n - 10) {
		x.del(0xffff888100000000 + i*0x800)
	}
	x.shrink()
	if len(x.keys) >= grown/16 || x.len() != 10 {
		t.Fatalf("after shrinking: %d slots (from %d), %d keys", len(x.keys), grown, x.len())
	}
	for i := uint64(n - 10); i < n; i++ {
		if v, ok := x.get(0xffff888100000000 + i*0x800); !ok || v != uint32(i) {
			t.Fatalf("key %d: %d, %v", i, v, ok)
		}
	}
}
