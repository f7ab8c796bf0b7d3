// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * timewait: the life of TIME_WAIT mini-sockets (struct inet_timewait_sock)
 * from the timer tracepoints, where the kernel forbids function hooks
 * (fentry.bpf.c is the cheaper way, where fentry attaches).
 *
 * sock:inet_sock_set_state never reports TIME_WAIT: the full socket goes to
 * CLOSE and a separate mini-socket takes over the 4-tuple, with no
 * tracepoint of its own. Its timer does have them. Every timer in the
 * kernel passes through these programs (about a dozen per short TCP
 * connection), so each one first compares the timer's function with
 * tw_timer_handler and returns at once for any other timer.
 */
#include "minisock.h"

/* emit_timer writes the record of a mini-socket's timer. The verifier
 * rejects a container_of() on the tracepoint's pointer ("invalid negative
 * access"), so the mini-socket's address is computed as an integer and
 * read through bpf_rdonly_cast (each field one guarded load) or, before
 * 6.2, through probe reads. */
static __always_inline int emit_timer(struct timer_list *timer, __u8 kind)
{
	unsigned long tw = (unsigned long)timer -
			   bpf_core_field_offset(struct inet_timewait_sock, tw_timer);
	struct tt_tw w = {};
	__u32 expires = 0;

#ifdef TT_PROBE_READ
	tw_fill_probe(&w, (const struct inet_timewait_sock *)tw);
#else
	tw_fill(&w, tt_cast(tw, struct inet_timewait_sock));
#endif
	if (!tw_wanted(&w))
		return 0;
	if (kind == TT_TIMER_START)
		expires = timer->expires - bpf_jiffies64();
	emit_tw(tw, kind, expires, &w);
	return 0;
}

SEC("tp_btf/timer_start")
int BPF_PROG(on_timer_start, struct timer_list *timer, unsigned long bucket_expiry)
{
	if (cfg.idle || (unsigned long)timer->function != cfg.tw_handler)
		return 0;
	return emit_timer(timer, TT_TIMER_START);
}

SEC("tp_btf/timer_cancel")
int BPF_PROG(on_timer_cancel, struct timer_list *timer)
{
	if (cfg.idle || (unsigned long)timer->function != cfg.tw_handler)
		return 0;
	return emit_timer(timer, TT_TIMER_CANCEL);
}

SEC("tp_btf/timer_expire_entry")
int BPF_PROG(on_timer_expire, struct timer_list *timer, unsigned long baseclk)
{
	if (cfg.idle || (unsigned long)timer->function != cfg.tw_handler)
		return 0;
	return emit_timer(timer, TT_TIMER_EXPIRE);
}
