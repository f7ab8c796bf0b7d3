package addrtable

import (
	"math/rand/v2"
	"testing"
)

// TestTable drives the table and a Go map with the same random
// inserts, updates and deletes, over keys that collide on purpose (aligned
// addresses, a small key space), through growth and shrinking.
func TestTable(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 3))
		x := New[uint32]()
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
				x.Put(k, v)
				model[k] = v
			case r < 9:
				x.Del(k)
				delete(model, k)
			default:
				x.Shrink()
			}
			if op%997 == 0 || op == 199_999 {
				if x.Len() != len(model) {
					t.Fatalf("seed %d op %d: len %d, want %d", seed, op, x.Len(), len(model))
				}
				for mk, mv := range model {
					if v, ok := x.Get(mk); !ok || v != mv {
						t.Fatalf("seed %d op %d: get(%#x) = %d, %v; want %d", seed, op, mk, v, ok, mv)
					}
				}
			}
			if v, ok := x.Get(k); ok != (model[k] == v && func() bool { _, in := model[k]; return in }()) {
				t.Fatalf("seed %d op %d: get(%#x) = %d, %v; model %v", seed, op, k, v, ok, model[k])
			}
		}
		// Emptied, a large table shrinks.
		for k := range model {
			x.Del(k)
		}
		x.Shrink()
		if x.Len() != 0 || len(x.keys) > 1<<shrinkBits {
			t.Fatalf("seed %d: emptied table holds %d in %d slots", seed, x.Len(), len(x.keys))
		}
	}
}

func TestMapShrink(t *testing.T) {
	x := New[uint32]()
	const n = 200_000
	for i := range uint64(n) {
		x.Put(0xffff888100000000+i*0x800, uint32(i))
	}
	grown := len(x.keys)
	for i := range uint64(n - 10) {
		x.Del(0xffff888100000000 + i*0x800)
	}
	x.Shrink()
	if len(x.keys) >= grown/16 || x.Len() != 10 {
		t.Fatalf("after shrinking: %d slots (from %d), %d keys", len(x.keys), grown, x.Len())
	}
	for i := uint64(n - 10); i < n; i++ {
		if v, ok := x.Get(0xffff888100000000 + i*0x800); !ok || v != uint32(i) {
			t.Fatalf("key %d: %d, %v", i, v, ok)
		}
	}
}
