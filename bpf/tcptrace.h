/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The ABI between tcptrace's BPF programs and its Go userspace. bpf2go
 * generates the Go side of every type here (-type), so nothing is mirrored
 * by hand. Change a field and `make generate` updates both sides.
 */
#ifndef TCPTRACE_H
#define TCPTRACE_H

/* What a record reports. */
enum tt_kind {
	/* A full socket changed state (sock:inet_sock_set_state). */
	TT_TRANSITION = 1,
	/* A TIME_WAIT mini-socket's timer was armed: a new mini-socket, or a
	 * re-arm of a live one. Userspace tells which. */
	TT_TIMER_START = 2,
	/* The mini-socket's timer was taken off the timer wheel. The kernel does
	 * this just before expiring it, just before re-arming it, and when it
	 * kills the mini-socket early; userspace tells which from the record
	 * that follows on the same CPU. */
	TT_TIMER_CANCEL = 3,
	/* The mini-socket's timer fired: it dies now, of old age. */
	TT_TIMER_EXPIRE = 4,
};

enum tt_flags {
	/* SYN_SENT -> CLOSE before a local port was chosen: connect() failed
	 * in inet_hash_connect(), which returns EADDRNOTAVAIL when the local
	 * port range is exhausted for the destination. */
	TT_F_CONNECT_FAILED = 1,
};

/* Which optional parts follow struct tt_event in a record, in this order. */
enum tt_ext {
	/* struct tt_addr6: the socket is IPv6. */
	TT_EXT_ADDR6 = 1,
	/* struct tt_comm: the transition ran in the owner's own system call,
	 * so the current task's name means something (pid is set then too). */
	TT_EXT_COMM = 2,
};

/* One record in the ring buffer: 56 bytes, no implicit padding, followed
 * by the parts ext names. With the ring buffer's 8-byte header the common
 * record (IPv4, no comm) takes 64 bytes, a cache line's worth: the kernel
 * writes and the reader reads about half the memory a fixed 96-byte
 * record took. */
struct tt_event {
	__u64 ts_ns;     /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 skaddr;    /* struct sock * or struct inet_timewait_sock * */
	__u32 pid;       /* tgid of the current task, with TT_EXT_COMM; else 0 */
	__u32 netns;     /* inode of the socket's network namespace */
	__u32 drops;     /* records this CPU failed to reserve so far */
	__u32 expires;   /* TT_TIMER_START: jiffies until the timer fires */
	__u32 saddr;     /* IPv4 local address (network order); 0 for IPv6 */
	__u32 daddr;     /* IPv4 remote address */
	__u16 sport;     /* local port, host byte order */
	__u16 dport;     /* remote port, host byte order */
	__u16 cpu;       /* CPU that wrote the record */
	__u8 kind;       /* enum tt_kind */
	__u8 family;     /* AF_INET or AF_INET6 */
	__u8 oldstate;   /* TT_TRANSITION: state left */
	__u8 newstate;   /* TT_TRANSITION: state entered; timer records: the
	                  * mini-socket's substate (TIME_WAIT or FIN_WAIT2) */
	__u8 flags;      /* enum tt_flags */
	__u8 ext;        /* enum tt_ext: the parts that follow */
	__u32 _pad;
};

/* TT_EXT_ADDR6 */
struct tt_addr6 {
	__u8 saddr[16];  /* local address */
	__u8 daddr[16];  /* remote address */
};

/* TT_EXT_COMM */
struct tt_comm {
	char comm[16];   /* comm of the current task */
};

struct tt_config {
	__u64 tw_handler;   /* address of tw_timer_handler, from /proc/kallsyms */
	__u32 netns;        /* trace only this network namespace inode */
	__u32 tgid;         /* trace only sockets of this process */
	__u32 wakeup_bytes; /* wake the reader once this much data is waiting */
	__u16 port;         /* trace only sockets with this local or remote port */
	__u16 family;       /* trace only AF_INET or AF_INET6 */
	__u32 idle;         /* measuring tcptrace's own cost: every program
	                     * returns at once (scripts/breakdown.sh) */
};

#endif /* TCPTRACE_H */
