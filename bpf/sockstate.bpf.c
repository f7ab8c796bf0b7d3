// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sockstate: one record per TCP state transition of a full socket.
 *
 * The tp_btf flavour of sock:inet_sock_set_state needs no tracefs (users
 * run tcptrace under `ip netns exec`, which hides it) and gives a trusted
 * struct sock pointer, so fields are read with plain loads.
 */
#include "common.h"

/* Never used: keeps the ABI types in BTF, where bpf2go's -type finds them. */
struct tt_abi {
	struct tt_event event;
	struct tt_addr6 addr6;
	struct tt_comm comm;
	enum tt_kind kind;
	enum tt_flags flags;
	enum tt_ext ext;
};
const struct tt_abi *unused_abi __attribute__((unused));

/* With a pid filter only: marks sockets that belong to the target process.
 * The storage dies with the socket. Userspace marks the sockets the target
 * already holds when tracing starts. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} target_socks SEC(".maps");

/* With a pid filter only: the target's listening ports. The children a
 * listener accepts start in softirq, where the current task is not the
 * owner, so they are recognized by their local port. Userspace adds the
 * listeners the target already has; listen() adds the rest. */
struct tt_port {
	__u32 netns;
	__u16 port;
	__u16 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct tt_port);
	__type(value, __u8);
} target_ports SEC(".maps");

/* Transitions that run in the owner's own system call, so the current task
 * is the owner (see kernel-facts.md). All others are packet-driven. */
static __always_inline bool in_owner_syscall(int oldstate, int newstate)
{
	return (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) ||
	       newstate == TCP_FIN_WAIT1 ||
	       (oldstate == TCP_CLOSE_WAIT && newstate == TCP_LAST_ACK) ||
	       (oldstate == TCP_CLOSE && newstate == TCP_LISTEN);
}

/* target_match applies the pid filter: a socket belongs to the target once
 * the target connect()s, listen()s or close()s it, or when one of the
 * target's listeners accepts it. */
static __always_inline bool target_match(struct sock *sk, __u32 tgid, __u32 netns,
					 __u16 sport, int oldstate, int newstate)
{
	struct tt_port port = { .netns = netns, .port = sport };
	__u8 one = 1;

	if (bpf_sk_storage_get(&target_socks, sk, 0, 0)) {
		if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE)
			bpf_map_delete_elem(&target_ports, &port);
		return true;
	}
	if (oldstate == TCP_LISTEN && newstate != TCP_CLOSE) {
		/* A new child of a listener. */
		if (!bpf_map_lookup_elem(&target_ports, &port))
			return false;
	} else if (tgid != cfg.tgid || !in_owner_syscall(oldstate, newstate)) {
		return false;
	}
	bpf_sk_storage_get(&target_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (oldstate == TCP_CLOSE && newstate == TCP_LISTEN)
		bpf_map_update_elem(&target_ports, &port, &one, BPF_ANY);
	return true;
}

/* Per CPU bookkeeping for on_set_state_nested: the transitions
 * on_set_state started on that on_set_state_nested has not checked yet
 * (only on_set_state adds them; the check clears them, so a socket address
 * reused later cannot match a stale entry), whether on_set_state_nested
 * is running, and how many transitions it recorded itself. */
#define TT_SEEN 16

struct tt_seen {
	__u64 sk;
	__u64 states; /* oldstate << 8 | newstate */
};

struct tt_cpu_state {
	struct tt_seen seen[TT_SEEN];
	__u64 last;
	__u64 nested_busy;
	__u64 rescued;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_cpu_state);
} cpu_state SEC(".maps");

/* What record() found out before writing: the record's fixed part. */
struct tt_found {
	struct tt_tuple t;
	__u64 pid_tgid;
	__u16 family;
	bool task;
};

/* emit writes one transition record. ext is a constant at each call site,
 * so the record size is too, as bpf_ringbuf_reserve requires. */
static __always_inline int emit(struct sock *sk, int oldstate, int newstate,
				const struct tt_found *f, const __u8 ext)
{
	__u64 size = sizeof(struct tt_event) +
		     (ext & TT_EXT_ADDR6 ? sizeof(struct tt_addr6) : 0) +
		     (ext & TT_EXT_COMM ? sizeof(struct tt_comm) : 0);
	struct tt_slot slot;
	struct tt_event *e;

	e = tt_reserve(size, &slot);
	if (!e)
		return 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->skaddr = (__u64)sk;
	e->pid = f->task ? f->pid_tgid >> 32 : 0;
	e->netns = f->t.netns;
	e->drops = slot.drops;
	e->expires = 0;
	e->sport = f->t.sport;
	e->dport = f->t.dport;
	e->cpu = slot.cpu;
	e->kind = TT_TRANSITION;
	e->family = f->family;
	e->oldstate = oldstate;
	e->newstate = newstate;
	/* inet_hash_connect() failed: the socket never got a local port (a
	 * refused or timed-out connect has one). */
	e->flags = oldstate == TCP_SYN_SENT && newstate == TCP_CLOSE && f->t.sport == 0 ?
		   TT_F_CONNECT_FAILED : 0;
	e->ext = ext;
	e->_pad = 0;
	tt_put_addrs(e, &f->t, ext);
	if (ext & TT_EXT_COMM) {
		struct tt_comm *c = (void *)(e + 1) +
				    (ext & TT_EXT_ADDR6 ? sizeof(struct tt_addr6) : 0);

		bpf_get_current_comm(c->comm, sizeof(c->comm));
	}
	tt_submit(e, &slot);
	return 0;
}

static __always_inline int record(struct sock *sk, int oldstate, int newstate)
{
	struct tt_found f = {};

	/* The tracepoint also fires for SCTP and MPTCP sockets. sk_protocol
	 * was an 8-bit bitfield before 5.6 and is a __u16 since: the CO-RE
	 * bitfield read takes the offset and width from the running kernel. */
	if (BPF_CORE_READ_BITFIELD(sk, sk_protocol) != IPPROTO_TCP)
		return 0;

	f.family = sk->__sk_common.skc_family;
	if (cfg.family && f.family != cfg.family)
		return 0;
	f.t.netns = sk->__sk_common.skc_net.net->ns.inum;
	if (cfg.netns && f.t.netns != cfg.netns)
		return 0;
	f.t.sport = sk->__sk_common.skc_num;
	/* Zero before connect() picks a port and after close releases it; the
	 * port the socket had is still in inet_sport then (beyond struct sock,
	 * so read through a cast). */
	if (f.t.sport == 0)
		f.t.sport = bpf_ntohs(tt_field(sk, struct inet_sock, inet_sport));
	f.t.dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (cfg.port && f.t.sport != cfg.port && f.t.dport != cfg.port)
		return 0;
	/* The current task means something only in the owner's own system
	 * call (and in a connect() that failed before sending its SYN); in
	 * softirq it is whoever was interrupted, so it is not even read. */
	f.task = in_owner_syscall(oldstate, newstate) ||
		 (oldstate == TCP_SYN_SENT && newstate == TCP_CLOSE && f.t.sport == 0);
	if (f.task || cfg.tgid)
		f.pid_tgid = bpf_get_current_pid_tgid();
	tt_fill_tuple(&f.t, &sk->__sk_common, f.family);
	if (cfg.tgid) {
		if (!target_match(sk, f.pid_tgid >> 32, f.t.netns, f.t.sport, oldstate, newstate))
			return 0;
		/* Remember the target's active closes for the tracepoints programs. */
		if (newstate == TCP_FIN_WAIT1) {
			__u8 one = 1;

			bpf_map_update_elem(&target_tuples, &f.t, &one, BPF_ANY);
		}
	}

	if (f.family == AF_INET6)
		return f.task ? emit(sk, oldstate, newstate, &f, TT_EXT_ADDR6 | TT_EXT_COMM)
			      : emit(sk, oldstate, newstate, &f, TT_EXT_ADDR6);
	return f.task ? emit(sk, oldstate, newstate, &f, TT_EXT_COMM)
		      : emit(sk, oldstate, newstate, &f, 0);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_set_state, struct sock *sk, int oldstate, int newstate)
{
	__u32 zero = 0;
	struct tt_cpu_state *c;

	if (cfg.idle)
		return 0;
	c = bpf_map_lookup_elem(&cpu_state, &zero);

	/* Running inside on_set_state_nested (an interrupt arrived while it
	 * checked): leave its view of the recent transitions alone. */
	if (c && !c->nested_busy) {
		__u64 i = ++c->last % TT_SEEN;

		c->seen[i].sk = (__u64)sk;
		c->seen[i].states = (__u64)oldstate << 8 | newstate;
	}
	return record(sk, oldstate, newstate);
}

/* The kernel runs a tracing program at most once per CPU at a time. When an
 * interrupt arrives while on_set_state runs (waking the reader raises one)
 * and the softirq it brings changes other sockets' states, the kernel skips
 * on_set_state for those transitions and counts recursion misses. This
 * program is attached after on_set_state, so it runs for every transition
 * too: a transition that is not among those on_set_state started on and
 * this program has not checked yet was skipped, and this records it
 * instead. Userspace reports misses minus rescues as lost. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_set_state_nested, struct sock *sk, int oldstate, int newstate)
{
	__u32 zero = 0;
	struct tt_cpu_state *c;
	__u64 states = (__u64)oldstate << 8 | newstate;
	bool found = false;

	if (cfg.idle)
		return 0;
	c = bpf_map_lookup_elem(&cpu_state, &zero);
	if (!c)
		return 0;
	c->nested_busy = 1;
	/* Almost always on_set_state has just started on this very transition:
	 * look there first. */
	struct tt_seen *last = &c->seen[c->last % TT_SEEN];

	if (last->sk == (__u64)sk && last->states == states) {
		last->sk = 0;
		c->nested_busy = 0;
		return 0;
	}
	for (int i = 0; i < TT_SEEN; i++) {
		if (c->seen[i].sk == (__u64)sk && c->seen[i].states == states) {
			c->seen[i].sk = 0;
			found = true;
			break;
		}
	}
	if (!found) {
		c->rescued++;
		record(sk, oldstate, newstate);
	}
	c->nested_busy = 0;
	return 0;
}
