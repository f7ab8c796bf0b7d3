package tracker

// sockIndex maps a socket's kernel address to its slot. Every transition
// looks its socket up here, and every new and closed socket inserts or
// deletes, so it is the tracker's hottest structure: a Go map spent a
// quarter of BenchmarkDecodeTrack's time in it. This is an open-addressing
// table with linear probing (one multiplicative hash, keys and values in
// two flat arrays, deletion by shifting the run back instead of leaving
// tombstones), about three times faster on this workload.
type sockIndex struct {
	keys  []uint64 // 0: empty slot
	vals  []uint32
	n     int
	shift uint // 64 - log2(len(keys))
	// Address 0 cannot be a slot key; a corrupt record may still carry it.
	zero    uint32
	hasZero bool
}

const (
	minIndexBits = 6
	// An index that held many sockets and now holds few is rebuilt
	// smaller (shrink): past this size, at under a sixteenth full.
	shrinkBits = 16
)

func newSockIndex() sockIndex {
	var x sockIndex
	x.resize(minIndexBits)
	return x
}

func (x *sockIndex) resize(bits uint) {
	oldK, oldV := x.keys, x.vals
	x.keys = make([]uint64, 1<<bits)
	x.vals = make([]uint32, 1<<bits)
	x.shift = 64 - bits
	x.n = 0
	for i, k := range oldK {
		if k != 0 {
			x.put(k, oldV[i])
		}
	}
}

// home is the slot a key hashes to (Fibonacci hashing: socket addresses
// are aligned, so their low bits say little).
func (x *sockIndex) home(k uint64) int { return int((k * 0x9e3779b97f4a7c15) >> x.shift) }

func (x *sockIndex) len() int {
	if x.hasZero {
		return x.n + 1
	}
	return x.n
}

func (x *sockIndex) get(k uint64) (uint32, bool) {
	if k == 0 {
		return x.zero, x.hasZero
	}
	mask := len(x.keys) - 1
	for i := x.home(k); ; i = (i + 1) & mask {
		switch x.keys[i] {
		case k:
			return x.vals[i], true
		case 0:
			return 0, false
		}
	}
}

func (x *sockIndex) put(k uint64, v uint32) {
	if k == 0 {
		x.zero, x.hasZero = v, true
		return
	}
	if 4*(x.n+1) > 3*len(x.keys) {
		x.resize(64 - x.shift + 1)
	}
	mask := len(x.keys) - 1
	i := x.home(k)
	for x.keys[i] != 0 && x.keys[i] != k {
		i = (i + 1) & mask
	}
	if x.keys[i] == 0 {
		x.n++
	}
	x.keys[i], x.vals[i] = k, v
}

func (x *sockIndex) del(k uint64) {
	if k == 0 {
		x.hasZero = false
		return
	}
	mask := len(x.keys) - 1
	i := x.home(k)
	for x.keys[i] != k {
		if x.keys[i] == 0 {
			return
		}
		i = (i + 1) & mask
	}
	// Move back every key after the hole that the hole cut off from its
	// home slot, so that lookups never stop early.
	for j := (i + 1) & mask; x.keys[j] != 0; j = (j + 1) & mask {
		h := x.home(x.keys[j])
		if (j-h)&mask >= (j-i)&mask {
			x.keys[i], x.vals[i] = x.keys[j], x.vals[j]
			i = j
		}
	}
	x.keys[i], x.vals[i] = 0, 0
	x.n--
}

// shrink gives back what a burst of sockets made the index grow to.
func (x *sockIndex) shrink() {
	bits := 64 - x.shift
	if bits <= shrinkBits || 16*x.n >= len(x.keys) {
		return
	}
	need := uint(minIndexBits)
	for 3<<need < 4*x.n*2 {
		need++
	}
	x.resize(need)
}
