/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the two ways of following TIME_WAIT mini-sockets share: reading a
 * struct inet_timewait_sock, the filters, and writing its records. The
 * timer tracepoints (tracepoints.bpf.c) and the function hooks
 * (fentry.bpf.c) write the very same records, so userspace cannot tell
 * which ran.
 */
#ifndef TCPTRACE_MINISOCK_H
#define TCPTRACE_MINISOCK_H

#include "common.h"

/* What is read from a mini-socket before writing its record. */
struct tt_tw {
	struct tt_tuple t;
	__u16 family;
	__u8 substate;
};

/* tw_fill reads a mini-socket with plain loads: tw is a pointer the
 * verifier trusts (a function argument of an fentry program, or one made
 * by bpf_rdonly_cast). */
static __always_inline void tw_fill(struct tt_tw *w, const struct inet_timewait_sock *tw)
{
	const struct sock_common *c = &tw->__tw_common;

	w->family = c->skc_family;
	w->t.netns = c->skc_net.net->ns.inum;
	w->t.sport = c->skc_num;
	w->t.dport = bpf_ntohs(c->skc_dport);
	tt_fill_tuple(&w->t, c, w->family);
	w->substate = tw->tw_substate;
}

#ifdef TT_PROBE_READ
/* tw_fill_probe reads a mini-socket at a plain address through CO-RE probe
 * reads, for kernels without bpf_rdonly_cast. */
static __always_inline void tw_fill_probe(struct tt_tw *w, const struct inet_timewait_sock *tw)
{
	const struct sock_common *c = &tw->__tw_common;

	w->family = BPF_CORE_READ(c, skc_family);
	w->t.netns = BPF_CORE_READ(c, skc_net.net, ns.inum);
	w->t.sport = BPF_CORE_READ(c, skc_num);
	w->t.dport = bpf_ntohs(BPF_CORE_READ(c, skc_dport));
	if (w->family == AF_INET6) {
		bpf_core_read(w->t.saddr, sizeof(w->t.saddr), &c->skc_v6_rcv_saddr);
		bpf_core_read(w->t.daddr, sizeof(w->t.daddr), &c->skc_v6_daddr);
	} else {
		*(__u32 *)w->t.saddr = BPF_CORE_READ(c, skc_rcv_saddr);
		*(__u32 *)w->t.daddr = BPF_CORE_READ(c, skc_daddr);
	}
	w->substate = BPF_CORE_READ(tw, tw_substate);
}
#endif

/* tw_wanted applies the filters userspace configured. */
static __always_inline bool tw_wanted(const struct tt_tw *w)
{
	if (cfg.family && w->family != cfg.family)
		return false;
	if (cfg.netns && w->t.netns != cfg.netns)
		return false;
	if (cfg.port && w->t.sport != cfg.port && w->t.dport != cfg.port)
		return false;
	/* With a pid filter, only the target's active closes (sockstate
	 * remembers their 4-tuples). */
	if (cfg.tgid && !bpf_map_lookup_elem(&target_tuples, &w->t))
		return false;
	return true;
}

/* fill_tw fills a reserved mini-socket record. expires is the timer's
 * length in jiffies (TT_TIMER_START only); ext is a constant at each call
 * site. */
static __always_inline void fill_tw(struct tt_event *e, const struct tt_slot *slot, __u64 tw,
				    __u8 kind, __u32 expires, const struct tt_tw *w, const __u8 ext)
{
	e->ts_ns = bpf_ktime_get_ns();
	e->skaddr = tw;
	/* Mini-sockets live in softirq: the current task means nothing. */
	e->pid = 0;
	e->netns = w->t.netns;
	e->drops = slot->drops;
	e->expires = expires;
	e->sport = w->t.sport;
	e->dport = w->t.dport;
	e->cpu = slot->cpu;
	e->kind = kind;
	e->family = w->family;
	e->oldstate = 0;
	e->newstate = w->substate;
	e->flags = 0;
	e->ext = ext;
	e->_pad = 0;
	tt_put_addrs(e, &w->t, ext);
}

#define TW_SIZE(ext) (sizeof(struct tt_event) + ((ext) & TT_EXT_ADDR6 ? sizeof(struct tt_addr6) : 0))

/* write_tw writes one mini-socket record. */
static __always_inline void write_tw(__u64 tw, __u8 kind, __u32 expires,
				     const struct tt_tw *w, const __u8 ext)
{
	struct tt_slot slot;
	struct tt_event *e;

	e = tt_reserve(TW_SIZE(ext), &slot);
	if (!e)
		return;
	fill_tw(e, &slot, tw, kind, expires, w, ext);
	tt_submit(e, &slot);
}

/* write_tw_rearm writes a re-arm: TT_TIMER_CANCEL then TT_TIMER_START,
 * as the timer tracepoints report one. Userspace pairs the two by their
 * order on the CPU, deciding "killed" if nothing follows a cancel soon:
 * so the start is committed before the cancel, and the reader, which
 * stops at a record still being written, sees both at once. */
static __always_inline void write_tw_rearm(__u64 tw, __u32 expires, const struct tt_tw *w, const __u8 ext)
{
	struct tt_slot cs, ss;
	struct tt_event *c, *st;

	c = tt_reserve(TW_SIZE(ext), &cs);
	if (!c)
		return;
	fill_tw(c, &cs, tw, TT_TIMER_CANCEL, 0, w, ext);
	st = tt_reserve(TW_SIZE(ext), &ss);
	if (st) {
		fill_tw(st, &ss, tw, TT_TIMER_START, expires, w, ext);
		tt_submit(st, &ss);
	}
	tt_submit(c, &cs);
}

static __always_inline void emit_tw(__u64 tw, __u8 kind, __u32 expires, const struct tt_tw *w)
{
	if (w->family == AF_INET6)
		write_tw(tw, kind, expires, w, TT_EXT_ADDR6);
	else
		write_tw(tw, kind, expires, w, 0);
}

static __always_inline void emit_tw_rearm(__u64 tw, __u32 expires, const struct tt_tw *w)
{
	if (w->family == AF_INET6)
		write_tw_rearm(tw, expires, w, TT_EXT_ADDR6);
	else
		write_tw_rearm(tw, expires, w, 0);
}

#endif /* TCPTRACE_MINISOCK_H */
