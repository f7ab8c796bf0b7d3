/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps and helpers shared by tcptrace's programs. Each .bpf.c file includes
 * this, so each object declares the maps; userspace creates them once (from
 * the sockstate object) and hands them to the mini-socket object (tracepoints
 * or fentry) with MapReplacements, so both write into the same ring buffers.
 */
#ifndef TCPTRACE_COMMON_H
#define TCPTRACE_COMMON_H

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tcptrace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Fields beyond what a program is handed (a struct inet_sock field of a
 * struct sock, a mini-socket found from its timer) are read one of two
 * ways, chosen at build time: each object is built twice (gen.go) and
 * userspace loads the variant the kernel supports.
 *
 * By default through bpf_rdonly_cast (6.2+), which turns any kernel
 * address into a read-only pointer of a BTF type: loads through it are
 * plain loads the JIT guards with an exception table entry, not a helper
 * call per field. With TT_PROBE_READ (kernels before 6.2), through CO-RE
 * probe reads (BPF_CORE_READ: bpf_probe_read_kernel per field).
 *
 * tt_field(ptr, type, field) reads one field of the type at ptr. */
#ifdef TT_PROBE_READ
#define tt_field(ptr, type, field) BPF_CORE_READ((const type *)(ptr), field)
#else
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define tt_cast(ptr, type) \
	((type *)bpf_rdonly_cast((const void *)(ptr), bpf_core_type_id_kernel(type)))
#define tt_field(ptr, type, field) (tt_cast(ptr, type)->field)
#endif

/* Filters and constants, written by userspace before load. A filter that
 * is off costs one load from this (hot) read-only map and a branch that is
 * always predicted right. */
volatile const struct tt_config cfg = {};

/* Every record goes to the ring buffer of the CPU that writes it: each
 * BPF ring buffer serializes its producers with a spinlock (interrupts
 * off), so one ring shared by all CPUs makes them wait for each other and
 * bounces the lock and the producer position between their caches. With
 * a ring per CPU no two CPUs ever touch the same ring, and each CPU's
 * records stay in the order that CPU wrote them, which the follow-up
 * logic in userspace (timer cancel -> re-arm or expiry) relies on.
 * Userspace creates one inner ring per CPU, sizes it, and merges the
 * rings by timestamp (internal/probe/ring.go). */
struct tt_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* set to the number of CPUs by userspace */
	__type(key, __u32);
	__array(values, struct tt_ring);
} rings SEC(".maps");

/* Per CPU: records that could not be reserved because the ring buffer was
 * full, and records written. Userspace sums them for the report: written
 * minus read must be zero, or records went missing on the way. Each record
 * also carries its CPU's drop count, so userspace can tell which
 * lifetimes a loss may have cut. */
struct tt_counters {
	__u64 dropped;
	__u64 written;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_counters);
} counters SEC(".maps");

/* With a pid filter only: 4-tuples of the target's sockets that began an
 * active close, so the TIME_WAIT mini-sockets they become (which carry no
 * owner) can be matched. Written by sockstate, read by tracepoints. */
struct tt_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 netns;
	__u16 sport;
	__u16 dport;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tt_tuple);
	__type(value, __u8);
} target_tuples SEC(".maps");

/* tt_fill_tuple copies a socket's or mini-socket's addresses. */
static __always_inline void tt_fill_tuple(struct tt_tuple *t, const struct sock_common *c, __u16 family)
{
	if (family == AF_INET6) {
		__builtin_memcpy(t->saddr, &c->skc_v6_rcv_saddr, sizeof(t->saddr));
		__builtin_memcpy(t->daddr, &c->skc_v6_daddr, sizeof(t->daddr));
	} else {
		*(__u32 *)t->saddr = c->skc_rcv_saddr;
		*(__u32 *)t->daddr = c->skc_daddr;
	}
}

/* tt_put_addrs writes the addresses into a record: IPv4 in the fixed
 * part, IPv6 in the struct tt_addr6 that follows it. */
static __always_inline void tt_put_addrs(struct tt_event *e, const struct tt_tuple *t, const __u8 ext)
{
	if (ext & TT_EXT_ADDR6) {
		struct tt_addr6 *a = (void *)(e + 1);

		e->saddr = 0;
		e->daddr = 0;
		__builtin_memcpy(a->saddr, t->saddr, sizeof(a->saddr));
		__builtin_memcpy(a->daddr, t->daddr, sizeof(a->daddr));
	} else {
		e->saddr = *(__u32 *)t->saddr;
		e->daddr = *(__u32 *)t->daddr;
	}
}

/* A record being written: where it goes, and what tt_reserve found out. */
struct tt_slot {
	void *ring;       /* this CPU's ring buffer */
	__u64 written;    /* records this CPU has written, this one included */
	__u32 drops;      /* records this CPU failed to reserve so far */
	__u32 cpu;
};

/* tt_reserve returns a record of size bytes (a constant at each call
 * site, as bpf_ringbuf_reserve requires) in this CPU's ring, or NULL,
 * counting the loss. A CPU that came online after tcptrace started has
 * no ring: its records count as dropped. */
static __always_inline struct tt_event *tt_reserve(__u64 size, struct tt_slot *s)
{
	__u32 zero = 0;
	struct tt_counters *n = bpf_map_lookup_elem(&counters, &zero);
	struct tt_event *e;

	if (!n)
		return NULL;
	s->cpu = bpf_get_smp_processor_id();
	s->ring = bpf_map_lookup_elem(&rings, &s->cpu);
	if (!s->ring) {
		n->dropped++;
		return NULL;
	}
	e = bpf_ringbuf_reserve(s->ring, size, 0);
	if (!e) {
		n->dropped++;
		return NULL;
	}
	s->written = ++n->written;
	s->drops = (__u32)n->dropped;
	return e;
}

/* tt_submit publishes a record. Waking the reader per record is what makes
 * per-event tracers expensive, so records are submitted without a wakeup
 * and the reader finds them on its next timed poll, which bounds the
 * delivery latency. Only when a batch of cfg.wakeup_bytes is waiting in
 * this CPU's ring is the reader woken, and that is checked on every 16th
 * record of a CPU (the check costs as much as a tenth of the record): a
 * reader that is awake reads every ring until it is empty, so a wakeup
 * per crossing is all it needs, and one per record past the mark would
 * interrupt the CPU with an IPI each time. */
static __always_inline void tt_submit(struct tt_event *e, const struct tt_slot *s)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if ((s->written & 15) == 0 &&
	    bpf_ringbuf_query(s->ring, BPF_RB_AVAIL_DATA) >= cfg.wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

#endif /* TCPTRACE_COMMON_H */
