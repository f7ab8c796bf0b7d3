// Package addrtable is a hash table keyed by a kernel object's address (a
// struct sock or a TIME_WAIT mini-socket), for the lookups made per record
// on the hot path (the tracker's socket index, the resolver's live
// mini-sockets).
//
// Every record looks its socket up, and every new and ended socket
// inserts or deletes, so these are the hottest structures in userspace: a
// Go map spent a quarter of BenchmarkDecodeTrack's time in the tracker's
// alone. This is an open-addressing table with linear probing (one
// multiplicative hash, keys and values in two flat arrays, deletion by
// shifting the run back instead of leaving tombstones), about three times
// faster on this workload. Unlike a Go map, it gives back what a burst
// made it grow to (Shrink). (Not a BPF sockmap: it lives in userspace.)
package addrtable

// Table maps a kernel address to a V. The zero Table is not usable: make one
// with New. A Table is not safe for concurrent use.
type Table[V any] struct {
	keys  []uint64 // 0: empty slot
	vals  []V
	n     int
	shift uint // 64 - log2(len(keys))
	// Address 0 cannot be a slot key; a corrupt record may still carry it.
	zero    V
	hasZero bool
}

const (
	minBits = 6
	// A table that held many keys and now holds few is rebuilt smaller
	// (Shrink): past this size, at under a sixteenth full.
	shrinkBits = 16
)

// New returns an empty Table.
func New[V any]() Table[V] {
	var m Table[V]
	m.resize(minBits)
	return m
}

func (m *Table[V]) resize(bits uint) {
	oldK, oldV := m.keys, m.vals
	m.keys = make([]uint64, 1<<bits)
	m.vals = make([]V, 1<<bits)
	m.shift = 64 - bits
	m.n = 0
	for i, k := range oldK {
		if k != 0 {
			m.Put(k, oldV[i])
		}
	}
}

// home is the slot a key hashes to (Fibonacci hashing: kernel addresses
// are aligned, so their low bits say little).
func (m *Table[V]) home(k uint64) int { return int((k * 0x9e3779b97f4a7c15) >> m.shift) }

// Len returns the number of keys.
func (m *Table[V]) Len() int {
	if m.hasZero {
		return m.n + 1
	}
	return m.n
}

// Get returns k's value and whether k is present.
func (m *Table[V]) Get(k uint64) (V, bool) {
	if k == 0 {
		return m.zero, m.hasZero
	}
	mask := len(m.keys) - 1
	for i := m.home(k); ; i = (i + 1) & mask {
		switch m.keys[i] {
		case k:
			return m.vals[i], true
		case 0:
			var zero V
			return zero, false
		}
	}
}

// Ref returns where k's value is stored, nil if k is absent. It is
// valid until the next Put, Del or Shrink.
func (m *Table[V]) Ref(k uint64) *V {
	if k == 0 {
		if m.hasZero {
			return &m.zero
		}
		return nil
	}
	mask := len(m.keys) - 1
	for i := m.home(k); ; i = (i + 1) & mask {
		switch m.keys[i] {
		case k:
			return &m.vals[i]
		case 0:
			return nil
		}
	}
}

// Put sets k's value.
func (m *Table[V]) Put(k uint64, v V) {
	if k == 0 {
		m.zero, m.hasZero = v, true
		return
	}
	if 4*(m.n+1) > 3*len(m.keys) {
		m.resize(64 - m.shift + 1)
	}
	mask := len(m.keys) - 1
	i := m.home(k)
	for m.keys[i] != 0 && m.keys[i] != k {
		i = (i + 1) & mask
	}
	if m.keys[i] == 0 {
		m.n++
	}
	m.keys[i], m.vals[i] = k, v
}

// Del removes k.
func (m *Table[V]) Del(k uint64) {
	var zero V
	if k == 0 {
		m.zero, m.hasZero = zero, false
		return
	}
	mask := len(m.keys) - 1
	i := m.home(k)
	for m.keys[i] != k {
		if m.keys[i] == 0 {
			return
		}
		i = (i + 1) & mask
	}
	// Move back every key after the hole that the hole cut off from its
	// home slot, so that lookups never stop early.
	for j := (i + 1) & mask; m.keys[j] != 0; j = (j + 1) & mask {
		h := m.home(m.keys[j])
		if (j-h)&mask >= (j-i)&mask {
			m.keys[i], m.vals[i] = m.keys[j], m.vals[j]
			i = j
		}
	}
	m.keys[i], m.vals[i] = 0, zero
	m.n--
}

// Shrink gives back what a burst of keys made the table grow to.
func (m *Table[V]) Shrink() {
	bits := 64 - m.shift
	if bits <= shrinkBits || 16*m.n >= len(m.keys) {
		return
	}
	need := uint(minBits)
	for 3<<need < 4*m.n*2 {
		need++
	}
	m.resize(need)
}
