package event

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

var (
	twLocal  = netip.MustParseAddrPort("127.0.0.1:5000")
	twRemote = netip.MustParseAddrPort("127.0.0.1:6000")
)

func raw(kind Kind, ts uint64, cpu uint16, sock uint64, sub State, ticks uint32) Event {
	return Event{Kind: kind, TimeNs: ts, CPU: cpu, Sock: sock, NewState: sub, ExpiresTicks: ticks,
		Family: IPv4, Local: twLocal, Remote: twRemote}
}

func trans(ts uint64, cpu uint16, sock uint64, old, new State) Event {
	return Event{Kind: Transition, TimeNs: ts, CPU: cpu, Sock: sock, OldState: old, NewState: new, Family: IPv4}
}

// describe renders what the resolver emitted, one event a line.
func describe(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%s sock=%d", e.Kind, e.Sock)
		switch e.Kind {
		case TimeWaitStart, TimeWaitRearm:
			fmt.Fprintf(&b, " %s in=%dms", e.NewState, e.DurationNs/1e6)
		case TimeWaitEnd:
			fmt.Fprintf(&b, " %s %s life=%dms", e.NewState, e.Cause, e.DurationNs/1e6)
		case Transition:
			fmt.Fprintf(&b, " %s->%s", e.OldState, e.NewState)
		}
		if e.Flags&FlagStartUnknown != 0 {
			b.WriteString(" start-unknown")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestResolver(t *testing.T) {
	const ms = 1_000_000
	tests := []struct {
		name  string
		hz    int
		in    []Event
		flush uint64
		then  []Event // fed after the flush
		want  string
	}{
		{
			name: "expiry: cancel then expire on the same CPU",
			hz:   250,
			in: []Event{
				raw(TimerStart, 1*ms, 0, 7, TimeWait, 15000),
				raw(TimerCancel, 60001*ms, 1, 7, TimeWait, 0),
				raw(TimerExpire, 60001*ms+2000, 1, 7, TimeWait, 0),
			},
			want: "timewait_start sock=7 TIME_WAIT in=60000ms\ntimewait_end sock=7 TIME_WAIT expired life=60000ms\n",
		},
		{
			name: "kill: cancel followed by another record on that CPU",
			hz:   250,
			in: []Event{
				raw(TimerStart, 1*ms, 0, 7, TimeWait, 15000),
				raw(TimerCancel, 201*ms, 0, 7, TimeWait, 0),
				trans(201*ms+500, 0, 99, SynSent, Established),
			},
			want: "timewait_start sock=7 TIME_WAIT in=60000ms\ntimewait_end sock=7 TIME_WAIT killed life=200ms\ntransition sock=99 SYN_SENT->ESTABLISHED\n",
		},
		{
			name: "records from other CPUs do not decide a cancel",
			hz:   250,
			in: []Event{
				raw(TimerStart, 1*ms, 0, 7, TimeWait, 15000),
				raw(TimerCancel, 60001*ms, 1, 7, TimeWait, 0),
				trans(60001*ms+100, 0, 99, Established, FinWait1),
				raw(TimerExpire, 60001*ms+2000, 1, 7, TimeWait, 0),
			},
			want: "timewait_start sock=7 TIME_WAIT in=60000ms\ntransition sock=99 ESTABLISHED->FIN_WAIT1\ntimewait_end sock=7 TIME_WAIT expired life=60000ms\n",
		},
		{
			name: "kill decided by Flush when the CPU goes quiet",
			hz:   250,
			in: []Event{
				raw(TimerStart, 1*ms, 0, 7, TimeWait, 15000),
				raw(TimerCancel, 301*ms, 1, 7, TimeWait, 0),
			},
			flush: 402 * ms,
			want:  "timewait_start sock=7 TIME_WAIT in=60000ms\ntimewait_end sock=7 TIME_WAIT killed life=300ms\n",
		},
		{
			name: "an expiry whose handler ran 20 ms after the cancel (a stalled virtual CPU)",
			hz:   250,
			in: []Event{
				raw(TimerStart, 1*ms, 0, 7, FinWait2, 250),
				raw(TimerCancel, 1001*ms, 1, 7, FinWait2, 0),
			},
			flush: 1010 * ms,
			then:  []Event{raw(TimerExpire, 1021*ms, 1, 7, FinWait2, 0)},
			want:  "timewait_start sock=7 FIN_WAIT2 in=1000ms\ntimewait_end sock=7 FIN_WAIT2 expired life=1020ms\n",
		},
		{
			name: "a cancel too recent for Flush stays parked (a follow-up may come 100 ms late in a VM)",
			hz:   250,
			in: []Event{
				raw(TimerStart, 1*ms, 0, 7, TimeWait, 15000),
				raw(TimerCancel, 301*ms, 1, 7, TimeWait, 0),
			},
			flush: 400 * ms,
			want:  "timewait_start sock=7 TIME_WAIT in=60000ms\n",
		},
		{
			name: "FIN_WAIT2 orphan gets its FIN: re-armed as TIME_WAIT",
			hz:   250,
			in: []Event{
				raw(TimerStart, 1*ms, 0, 7, FinWait2, 500),
				raw(TimerCancel, 501*ms, 0, 7, TimeWait, 0),
				raw(TimerStart, 501*ms+300, 0, 7, TimeWait, 15000),
				raw(TimerCancel, 60502*ms, 1, 7, TimeWait, 0),
				raw(TimerExpire, 60502*ms+10, 1, 7, TimeWait, 0),
			},
			want: "timewait_start sock=7 FIN_WAIT2 in=2000ms\ntimewait_rearm sock=7 TIME_WAIT in=60000ms\ntimewait_end sock=7 TIME_WAIT expired life=60501ms\n",
		},
		{
			name: "memory reused after a kill is a new mini-socket, not a re-arm",
			hz:   250,
			in: []Event{
				raw(TimerStart, 1*ms, 0, 7, TimeWait, 15000),
				raw(TimerCancel, 100*ms, 0, 7, TimeWait, 0),
				raw(TimerStart, 900*ms, 0, 7, TimeWait, 15000),
			},
			want: "timewait_start sock=7 TIME_WAIT in=60000ms\ntimewait_end sock=7 TIME_WAIT killed life=99ms\ntimewait_start sock=7 TIME_WAIT in=60000ms\n",
		},
		{
			name: "end of a mini-socket that predates tracing has no lifetime",
			hz:   250,
			in: []Event{
				raw(TimerCancel, 5*ms, 0, 8, TimeWait, 0),
				raw(TimerExpire, 5*ms+10, 0, 8, TimeWait, 0),
			},
			want: "timewait_end sock=8 TIME_WAIT expired life=0ms start-unknown\n",
		},
		{
			name: "HZ learned from the first TIME_WAIT start",
			hz:   0,
			in: []Event{
				raw(TimerStart, 1*ms, 0, 7, TimeWait, 60000),
				raw(TimerStart, 2*ms, 0, 9, FinWait2, 30000),
			},
			want: "timewait_start sock=7 TIME_WAIT in=60000ms\ntimewait_start sock=9 FIN_WAIT2 in=30000ms\n",
		},
		{
			name: "failed connect adds a connect_error",
			hz:   250,
			in: []Event{
				{Kind: Transition, TimeNs: 1, Sock: 5, OldState: SynSent, NewState: Close, Flags: FlagConnectFailed},
			},
			want: "transition sock=5 SYN_SENT->CLOSE\nconnect_error sock=5\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewResolver(tt.hz)
			var got []Event
			emit := func(e *Event) { got = append(got, *e) }
			for i := range tt.in {
				r.Feed(&tt.in[i], emit)
			}
			if tt.flush != 0 {
				r.Flush(tt.flush, emit)
			}
			for i := range tt.then {
				r.Feed(&tt.then[i], emit)
			}
			if s := describe(got); s != tt.want {
				t.Errorf("got:\n%swant:\n%s", s, tt.want)
			}
		})
	}
}

func TestResolverAuxAndCap(t *testing.T) {
	r := NewResolver(250)
	r.MaxLive = 1
	var got []Event
	emit := func(e *Event) { got = append(got, *e) }
	a := raw(TimerStart, 1, 0, 1, TimeWait, 15000)
	b := raw(TimerStart, 2, 0, 2, TimeWait, 15000)
	r.Feed(&a, emit)
	r.SetAux(1, 42)
	r.Feed(&b, emit)
	if r.Untracked != 1 || r.Live() != 1 {
		t.Fatalf("untracked=%d live=%d, want 1 and 1", r.Untracked, r.Live())
	}
	c := raw(TimerExpire, 3, 0, 1, TimeWait, 0)
	r.Feed(&c, emit)
	if last := got[len(got)-1]; last.Kind != TimeWaitEnd || last.Aux != 42 {
		t.Fatalf("end event %+v, want aux 42", last)
	}
}

func TestFlushAtEndOfStream(t *testing.T) {
	r := NewResolver(250)
	var got []Event
	emit := func(e *Event) { got = append(got, *e) }
	c := raw(TimerCancel, 10, 3, 1, TimeWait, 0)
	r.Feed(&c, emit)
	r.Flush(^uint64(0), emit)
	if len(got) != 1 || got[0].Cause != Killed {
		t.Fatalf("got %v, want one kill", describe(got))
	}
}

func TestStateNames(t *testing.T) {
	for s := State(1); s < NumStates; s++ {
		p, ok := ParseState(s.String())
		if !ok || p != s {
			t.Errorf("ParseState(%q) = %v, %v", s.String(), p, ok)
		}
	}
	if _, ok := ParseState("UNKNOWN"); ok {
		t.Error("UNKNOWN parsed as a state")
	}
	if got := State(200).String(); got != "STATE_200" {
		t.Errorf("State(200) = %q", got)
	}
}
