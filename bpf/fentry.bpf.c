// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * fentry: the life of TIME_WAIT mini-sockets from fentry hooks on the
 * few kernel functions that make, re-arm and end one
 * (net/ipv4/inet_timewait_sock.c), where the kernel allows fentry (BPF
 * trampolines, and no lockdown forbidding them). Each runs once or twice
 * per connection, instead of the timer tracepoints (tracepoints.bpf.c) that
 * run for every timer in the kernel: a dozen or more per TCP connection.
 *
 * The records are the ones the timer tracepoints write, in the same
 * order, so userspace (event.Resolver) reads both the same way:
 *   birth    TT_TIMER_START                 the timer is first armed
 *   re-arm   TT_TIMER_CANCEL, TT_TIMER_START the timer is moved (a FIN
 *            turned an orphan into TIME_WAIT, or a retransmitted FIN)
 *   expiry   TT_TIMER_EXPIRE                the timer fired
 *   kill     TT_TIMER_CANCEL alone          killed early (SYN, RST, reuse
 *            by connect(), namespace teardown)
 * Unlike the timer wheel, which moves a timer silently when the new
 * expiry falls in the same bucket, these see every re-arm.
 *
 * Function arguments are pointers the verifier trusts, so fields are
 * plain loads on every kernel: this object has no probe-read variant.
 */
#include "minisock.h"

struct inet_hashinfo;

/* Per CPU: the mini-socket whose timer handler is running, so that
 * inet_twsk_kill(), which both the timer handler and an early kill call,
 * can tell an expiry from a kill. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tw_expiring SEC(".maps");

static __always_inline int emit_hook(struct inet_timewait_sock *tw, __u8 kind, int timeo)
{
	struct tt_tw w = {};

	tw_fill(&w, tw);
	if (!tw_wanted(&w))
		return 0;
	emit_tw((__u64)tw, kind, timeo, &w);
	return 0;
}

static __always_inline int emit_rearm(struct inet_timewait_sock *tw, int timeo)
{
	struct tt_tw w = {};

	tw_fill(&w, tw);
	if (!tw_wanted(&w))
		return 0;
	emit_tw_rearm((__u64)tw, timeo, &w);
	return 0;
}

/* Arms the timer of a new mini-socket (rearm false) or moves it (true).
 * Attached where the kernel has no inet_twsk_hashdance_schedule (before
 * 6.11): tcp_time_wait() calls this for every new mini-socket. */
SEC("fentry/__inet_twsk_schedule")
int BPF_PROG(on_tw_schedule, struct inet_timewait_sock *tw, int timeo, bool rearm)
{
	if (cfg.idle)
		return 0;
	if (rearm)
		return emit_rearm(tw, timeo);
	return emit_hook(tw, TT_TIMER_START, timeo);
}

/* The same hook for re-arms only, where new mini-sockets are armed inside
 * inet_twsk_hashdance_schedule (6.11+), which may have inlined
 * __inet_twsk_schedule, so it is hooked instead. */
SEC("fentry/__inet_twsk_schedule")
int BPF_PROG(on_tw_rearm, struct inet_timewait_sock *tw, int timeo, bool rearm)
{
	if (cfg.idle || !rearm)
		return 0;
	return emit_rearm(tw, timeo);
}

/* 6.11+: hashes a new mini-socket in and arms its timer. */
SEC("fentry/inet_twsk_hashdance_schedule")
int BPF_PROG(on_tw_hashdance, struct inet_timewait_sock *tw, struct sock *sk,
	     struct inet_hashinfo *hashinfo, int timeo)
{
	if (cfg.idle)
		return 0;
	return emit_hook(tw, TT_TIMER_START, timeo);
}

/* The timer fired; inet_twsk_kill() follows on this CPU. Only the
 * address is noted, nothing is read. */
SEC("fentry/tw_timer_handler")
int BPF_PROG(on_tw_timer, struct timer_list *timer)
{
	__u32 zero = 0;
	__u64 *expiring;

	if (cfg.idle)
		return 0;
	expiring = bpf_map_lookup_elem(&tw_expiring, &zero);
	if (expiring)
		*expiring = (unsigned long)timer -
			    bpf_core_field_offset(struct inet_timewait_sock, tw_timer);
	return 0;
}

/* The mini-socket dies: its timer fired (tw_timer_handler) or was stopped
 * by inet_twsk_deschedule_put(). */
SEC("fentry/inet_twsk_kill")
int BPF_PROG(on_tw_kill, struct inet_timewait_sock *tw)
{
	__u32 zero = 0;
	__u64 *expiring;
	__u8 kind = TT_TIMER_CANCEL;

	if (cfg.idle)
		return 0;
	expiring = bpf_map_lookup_elem(&tw_expiring, &zero);
	if (expiring && *expiring == (__u64)tw) {
		*expiring = 0;
		kind = TT_TIMER_EXPIRE;
	}
	return emit_hook(tw, kind, 0);
}
