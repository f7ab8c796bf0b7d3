// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * timewait: the life of TIME_WAIT mini-sockets (struct inet_timewait_sock).
 *
 * sock:inet_sock_set_state never reports TIME_WAIT: the full socket goes to
 * CLOSE and a separate mini-socket takes over the 4-tuple, with no
 * tracepoint of its own. Its timer does have them. Every timer in the
 * kernel passes through these programs (about a dozen per short TCP
 * connection), so each one first compares the timer's function with
 * tw_timer_handler and returns at once for any other timer.
 */
#include "common.h"

/* tw_of turns the timer into its mini-socket. The verifier rejects a
 * container_of() on the tracepoint's pointer ("invalid negative access"),
 * so the address is computed as an integer and cast back with
 * bpf_rdonly_cast: each field is then one guarded load. */
static __always_inline struct inet_timewait_sock *tw_of(struct timer_list *timer)
{
	return tt_cast((unsigned long)timer -
		       bpf_core_field_offset(struct inet_timewait_sock, tw_timer),
		       struct inet_timewait_sock);
}

/* What emit_tw found out before writing. */
struct tt_tw {
	struct tt_tuple t;
	__u16 family;
	__u8 substate;
};

/* write_tw writes one timer record; ext is a constant at each call site. */
static __always_inline void write_tw(struct inet_timewait_sock *tw, struct timer_list *timer,
				     __u8 kind, const struct tt_tw *w, const __u8 ext)
{
	__u64 size = sizeof(struct tt_event) + (ext & TT_EXT_ADDR6 ? sizeof(struct tt_addr6) : 0);
	struct tt_slot slot;
	struct tt_event *e;

	e = tt_reserve(size, &slot);
	if (!e)
		return;
	e->ts_ns = bpf_ktime_get_ns();
	e->skaddr = (__u64)tw;
	/* Timers run in softirq: the current task means nothing here. */
	e->pid = 0;
	e->netns = w->t.netns;
	e->drops = slot.drops;
	e->expires = 0;
	if (kind == TT_TIMER_START)
		e->expires = timer->expires - bpf_jiffies64();
	e->sport = w->t.sport;
	e->dport = w->t.dport;
	e->cpu = slot.cpu;
	e->kind = kind;
	e->family = w->family;
	e->oldstate = 0;
	e->newstate = w->substate;
	e->flags = 0;
	e->ext = ext;
	e->_pad = 0;
	tt_put_addrs(e, &w->t, ext);
	tt_submit(e, &slot);
}

static __always_inline int emit_tw(struct timer_list *timer, __u8 kind)
{
	struct inet_timewait_sock *tw = tw_of(timer);
	struct sock_common *c = &tw->__tw_common;
	struct tt_tw w = {};

	w.family = c->skc_family;
	if (cfg.family && w.family != cfg.family)
		return 0;
	w.t.netns = c->skc_net.net->ns.inum;
	if (cfg.netns && w.t.netns != cfg.netns)
		return 0;
	w.t.sport = c->skc_num;
	w.t.dport = bpf_ntohs(c->skc_dport);
	if (cfg.port && w.t.sport != cfg.port && w.t.dport != cfg.port)
		return 0;

	/* The 4-tuple goes to the stack first: the pid filter needs it before
	 * a record is reserved. */
	tt_fill_tuple(&w.t, c, w.family);
	if (cfg.tgid && !bpf_map_lookup_elem(&target_tuples, &w.t))
		return 0;
	w.substate = tw->tw_substate;

	if (w.family == AF_INET6)
		write_tw(tw, timer, kind, &w, TT_EXT_ADDR6);
	else
		write_tw(tw, timer, kind, &w, 0);
	return 0;
}

SEC("tp_btf/timer_start")
int BPF_PROG(on_timer_start, struct timer_list *timer, unsigned long bucket_expiry)
{
	if (cfg.idle || (unsigned long)timer->function != cfg.tw_handler)
		return 0;
	return emit_tw(timer, TT_TIMER_START);
}

SEC("tp_btf/timer_cancel")
int BPF_PROG(on_timer_cancel, struct timer_list *timer)
{
	if (cfg.idle || (unsigned long)timer->function != cfg.tw_handler)
		return 0;
	return emit_tw(timer, TT_TIMER_CANCEL);
}

SEC("tp_btf/timer_expire_entry")
int BPF_PROG(on_timer_expire, struct timer_list *timer, unsigned long baseclk)
{
	if (cfg.idle || (unsigned long)timer->function != cfg.tw_handler)
		return 0;
	return emit_tw(timer, TT_TIMER_EXPIRE);
}
