package leaderelection

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// The timing every case below runs with: deadline = sent + 10 s - 1 s.
var testConfig = Config{
	Term: 10 * time.Second, Renew: 3 * time.Second, Retry: time.Second,
	Margin: time.Second, Timeout: 2 * time.Second,
}

var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

func lease(token int64, ttl float64) *Lease {
	return &Lease{Key: "job", Holder: "me", FencingToken: token, TTL: ttl, Held: true}
}

var (
	errTransport = &TransportError{Method: "POST", Path: "/v1/leases/job/renew", Err: errors.New("connection refused")}
	errHeld      = &ServiceError{Code: "lease_held", Status: 409, Message: "held", Lease: lease(1, 10)}
	errLost      = &ServiceError{Code: "lease_lost", Status: 409, Message: "lost"}
	errHandedOn  = &ServiceError{Code: "lease_lost", Status: 409, Message: "transferred", Lease: handed(1, "me", "next")}
	errLostTo    = &ServiceError{Code: "lease_lost", Status: 409, Message: "lost", Lease: handed(2, "other", "")}
	errNotFound  = &ServiceError{Code: "not_found", Status: 404, Message: "never acquired"}
	errForbidden = &ServiceError{Code: "forbidden", Status: 403, Message: "read-only token"}
	errDown5     = &ServiceError{Code: "backend_unavailable", Status: 503, Message: "down", RetryAfter: 5 * time.Second}
	errDown60    = &ServiceError{Code: "backend_unavailable", Status: 503, Message: "down", RetryAfter: time.Minute}
)

// handed is the record a renew's lease_lost carries after an admin's transfer.
func handed(token int64, holder, successor string) *Lease {
	l := lease(token, 10)
	l.Holder, l.Successor = holder, successor
	return l
}

type step struct {
	at    time.Duration
	in    Input // Now is filled from at
	want  []ActionKind
	phase string // "" leaves it unchecked
	check func(t *testing.T, e *Election)
}

func tick(d time.Duration) Input            { return Input{Kind: Tick} }
func ok(l *Lease) Input                     { return Input{Kind: Answered, Lease: l} }
func failed(err error) Input                { return Input{Kind: Answered, Err: err} }
func acts(kinds ...ActionKind) []ActionKind { return kinds }

func deadlineIs(want time.Duration) func(*testing.T, *Election) {
	return func(t *testing.T, e *Election) {
		if !e.Deadline.Equal(at(want)) {
			t.Errorf("deadline %v, want %v", e.Deadline.Sub(base), want)
		}
	}
}

func nextAcquireIs(want time.Duration) func(*testing.T, *Election) {
	return func(t *testing.T, e *Election) {
		if !e.NextAcquire.Equal(at(want)) {
			t.Errorf("next acquire at %v, want %v", e.NextAcquire.Sub(base), want)
		}
	}
}

func nextRenewIs(want time.Duration) func(*testing.T, *Election) {
	return func(t *testing.T, e *Election) {
		if !e.NextRenew.Equal(at(want)) {
			t.Errorf("next renew at %v, want %v", e.NextRenew.Sub(base), want)
		}
	}
}

// elect: the first acquire, sent at 0, granted at 100 ms: deadline 9 s, renew at 3 s.
var elect = []step{
	{at: 0, in: tick(0), want: acts(SendAcquire), phase: "following"},
	{at: 100 * time.Millisecond, in: ok(lease(1, 10)), want: acts(Elected), phase: "leading", check: deadlineIs(9 * time.Second)},
}

func then(steps ...step) []step { return append(append([]step{}, elect...), steps...) }

func TestElectionSteps(t *testing.T) {
	s := time.Second
	ms := time.Millisecond
	cases := []struct {
		name  string
		steps []step
	}{
		{"elected: deadline is send time + term - margin", elect},
		{"a shorter granted ttl shortens the deadline", []step{
			{at: 0, in: tick(0), want: acts(SendAcquire)},
			{at: 100 * ms, in: ok(lease(1, 4)), want: acts(Elected), phase: "leading", check: deadlineIs(3 * s)},
		}},
		{"an answer after its own deadline begins nothing", []step{
			{at: 0, in: tick(0), want: acts(SendAcquire)},
			{at: 9 * s, in: ok(lease(1, 10)), want: nil, phase: "following", check: nextAcquireIs(10 * s)},
		}},
		{"lease_held: no error reported, next acquire after retry", []step{
			{at: 0, in: tick(0), want: acts(SendAcquire)},
			{at: 50 * ms, in: failed(errHeld), want: nil, phase: "following", check: nextAcquireIs(1050 * ms)},
			{at: 1 * s, in: tick(0), want: nil, phase: "following"},
			{at: 1050 * ms, in: tick(0), want: acts(SendAcquire), phase: "following"},
		}},
		{"a transport error on acquire is reported, then retry", []step{
			{at: 0, in: tick(0), want: acts(SendAcquire)},
			{at: 50 * ms, in: failed(errTransport), want: acts(ReportError), phase: "following", check: nextAcquireIs(1050 * ms)},
		}},
		{"a 503's Retry-After is honoured", []step{
			{at: 0, in: tick(0), want: acts(SendAcquire)},
			{at: 0, in: failed(errDown5), want: acts(ReportError), check: nextAcquireIs(5 * s)},
		}},
		{"a 503's Retry-After is honoured up to one term", []step{
			{at: 0, in: tick(0), want: acts(SendAcquire)},
			{at: 0, in: failed(errDown60), want: acts(ReportError), check: nextAcquireIs(10 * s)},
		}},
		{"the watch stream's free event sends the acquire at once", []step{
			{at: 0, in: tick(0), want: acts(SendAcquire)},
			{at: 50 * ms, in: failed(errHeld), want: nil},
			{at: 300 * ms, in: Input{Kind: Free}, want: acts(SendAcquire)},
		}},
		{"a free event during an acquire retries at once after lease_held", []step{
			{at: 0, in: tick(0), want: acts(SendAcquire)},
			{at: 10 * ms, in: Input{Kind: Free}, want: nil},
			{at: 50 * ms, in: failed(errHeld), want: acts(SendAcquire)},
		}},
		{"a late grant while woken retries at once (C3 then C6)", []step{
			{at: 0, in: tick(0), want: acts(SendAcquire)},
			{at: 10 * ms, in: Input{Kind: Free}, want: nil},
			{at: 9 * s, in: ok(lease(1, 10)), want: acts(SendAcquire), phase: "following"},
			{at: 9050 * ms, in: failed(errHeld), want: nil, check: nextAcquireIs(10050 * ms)},
		}},
		{"a free event while leading ends the first follower wait after the term (W2)", then(
			step{at: 1 * s, in: Input{Kind: Free}, want: nil, phase: "leading"},
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			step{at: 3100 * ms, in: failed(errLost), want: acts(Ousting, SendAcquire), phase: "following"},
			step{at: 3200 * ms, in: failed(errHeld), want: acts(SendAcquire), phase: "following"},
			step{at: 3300 * ms, in: failed(errHeld), want: nil, check: nextAcquireIs(4300 * ms)},
		)},
		{"renew at send time + renew; success moves the deadline", then(
			step{at: 2900 * ms, in: tick(0), want: nil, phase: "leading"},
			step{at: 3 * s, in: tick(0), want: acts(SendRenew), phase: "leading"},
			step{at: 3200 * ms, in: ok(lease(1, 10)), want: nil, phase: "leading", check: deadlineIs(12 * s)},
			step{at: 6 * s, in: tick(0), want: acts(SendRenew), check: nextRenewIs(6 * s)},
		)},
		{"a renew answered with a shorter ttl never moves the deadline back", then(
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			step{at: 3100 * ms, in: ok(lease(1, 2)), want: nil, phase: "leading", check: deadlineIs(9 * s)},
		)},
		{"the deadline ends the term while a renew hangs", then(
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			step{at: 8999 * ms, in: tick(0), want: nil, phase: "leading"},
			step{at: 9 * s, in: tick(0), want: acts(Ousting), phase: "following"},
			// the hanging renew times out: reported; campaign again at once
			step{at: 9500 * ms, in: failed(errTransport), want: acts(ReportError, SendAcquire), phase: "following"},
		)},
		{"a renew answered after the old deadline but before its own resumes the term", then(
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			step{at: 9 * s, in: tick(0), want: acts(Ousting), phase: "following"},
			// its renew time (sent 3 s + renew 3 s) has passed too: renew at once
			step{at: 9500 * ms, in: ok(lease(1, 10)), want: acts(Elected, SendRenew), phase: "leading", check: deadlineIs(12 * s)},
		)},
		{"lease_lost ends the term at once and campaigns again", then(
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			step{at: 3100 * ms, in: failed(errLost), want: acts(Ousting, SendAcquire), phase: "following"},
		)},
		{"an admin's transfer: step down, release the term, then campaign again", then(
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			step{at: 3100 * ms, in: failed(errHandedOn), want: acts(Ousting, SendRelease), phase: "following"},
			// the release's answer changes nothing: acquire at once
			step{at: 3200 * ms, in: ok(lease(1, 10)), want: acts(SendAcquire), phase: "following", check: func(t *testing.T, e *Election) {
				if e.HandOver != nil || e.Last != nil {
					t.Errorf("hand-over still pending: %+v %+v", e.HandOver, e.Last)
				}
			}},
			step{at: 3300 * ms, in: failed(errHeld), want: nil, phase: "following"},
		)},
		{"a failed hand-over release is not reported: the successor's term decides", then(
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			step{at: 3100 * ms, in: failed(errHandedOn), want: acts(Ousting, SendRelease)},
			step{at: 3200 * ms, in: failed(errLost), want: acts(SendAcquire), phase: "following"},
		)},
		{"stop while the hand-over release is in flight: that release ends it", then(
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			step{at: 3100 * ms, in: failed(errHandedOn), want: acts(Ousting, SendRelease)},
			step{at: 3150 * ms, in: Input{Kind: Stop}, want: nil, phase: "stopping"},
			step{at: 3200 * ms, in: ok(lease(1, 10)), want: acts(Finish), phase: "done"},
		)},
		{"lease_lost naming another holder is no hand-over: no release", then(
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			step{at: 3100 * ms, in: failed(errLostTo), want: acts(Ousting, SendAcquire), phase: "following"},
		)},
		{"not_found on renew is lost too", then(
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			step{at: 3100 * ms, in: failed(errNotFound), want: acts(Ousting, SendAcquire), phase: "following"},
		)},
		{"a failed renew is retried with jitter inside the deadline", then(
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			// room = 9 - 4 - timeout 2 = 3 s, capped at retry 1 s, jitter 0.5: 0.5 s
			step{at: 4 * s, in: failed(errTransport), want: acts(ReportError), phase: "leading", check: nextRenewIs(4500 * ms)},
			step{at: 4500 * ms, in: tick(0), want: acts(SendRenew), phase: "leading"},
		)},
		{"near the deadline the renew timeout is cut to what is left", then(
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			step{at: 8 * s, in: failed(errTransport), want: acts(ReportError), phase: "leading", check: func(t *testing.T, e *Election) {
				// no room for a full attempt: wait timeout/10 = 200 ms
				if !e.NextRenew.Equal(at(8200 * ms)) {
					t.Errorf("next renew at %v", e.NextRenew.Sub(base))
				}
			}},
			step{at: 8200 * ms, in: tick(0), want: acts(SendRenew)},
		)},
		{"stop while leading: ousting, release, finish", then(
			step{at: 1 * s, in: Input{Kind: Stop}, want: acts(Ousting, SendRelease), phase: "stopping"},
			step{at: 1100 * ms, in: ok(lease(1, 10)), want: acts(Finish), phase: "done"},
		)},
		{"stop while following and never granted: finish at once", []step{
			{at: 0, in: tick(0), want: acts(SendAcquire)},
			{at: 50 * ms, in: failed(errHeld), want: nil},
			{at: 100 * ms, in: Input{Kind: Stop}, want: acts(Finish), phase: "done"},
		}},
		{"stop during an acquire: a grant begins nothing and is released", []step{
			{at: 0, in: tick(0), want: acts(SendAcquire)},
			{at: 10 * ms, in: Input{Kind: Stop}, want: nil, phase: "stopping"},
			{at: 50 * ms, in: ok(lease(3, 10)), want: acts(SendRelease), phase: "stopping"},
			{at: 60 * ms, in: ok(lease(3, 10)), want: acts(Finish), phase: "done"},
		}},
		{"a release answered lease_lost is not an error", then(
			step{at: 1 * s, in: Input{Kind: Stop}, want: acts(Ousting, SendRelease)},
			step{at: 1100 * ms, in: failed(errLost), want: acts(Finish), phase: "done"},
		)},
		{"a release that fails is reported", then(
			step{at: 1 * s, in: Input{Kind: Stop}, want: acts(Ousting, SendRelease)},
			step{at: 1100 * ms, in: failed(errTransport), want: acts(ReportError, Finish), phase: "done"},
		)},
		{"a permanent error on acquire ends the election after one report", []step{
			{at: 0, in: tick(0), want: acts(SendAcquire)},
			{at: 50 * ms, in: failed(errForbidden), want: acts(ReportError, Finish), phase: "done"},
		}},
		{"a permanent error on renew: ousting, one report, release", then(
			step{at: 3 * s, in: tick(0), want: acts(SendRenew)},
			step{at: 3100 * ms, in: failed(errForbidden), want: acts(Ousting, ReportError, SendRelease), phase: "stopping"},
			step{at: 3200 * ms, in: failed(errForbidden), want: acts(Finish), phase: "done"},
		)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := NewElection(testConfig, func() float64 { return 0 })
			for i, st := range c.steps {
				in := st.in
				in.Now = at(st.at)
				got := kinds(e.Step(in))
				if !reflect.DeepEqual(got, st.want) {
					t.Fatalf("step %d (%v at %v): actions %v, want %v", i, in.Kind, st.at, got, st.want)
				}
				if st.phase != "" && e.Phase.String() != st.phase {
					t.Fatalf("step %d: phase %v, want %v", i, e.Phase, st.phase)
				}
				if st.check != nil {
					st.check(t, e)
				}
			}
		})
	}
}

func kinds(actions []Action) []ActionKind {
	var out []ActionKind
	for _, a := range actions {
		out = append(out, a.Kind)
	}
	return out
}

func TestIsLeaderTurnsFalseAtTheDeadlineWithoutAStep(t *testing.T) {
	e := NewElection(testConfig, func() float64 { return 0 })
	e.Step(Input{Kind: Tick, Now: at(0)})
	e.Step(Input{Kind: Answered, Now: at(0), Lease: lease(1, 10)})
	if !e.IsLeader(at(9*time.Second - 1)) {
		t.Fatal("not leader just before the deadline")
	}
	if e.IsLeader(at(9 * time.Second)) {
		t.Fatal("still leader at the deadline")
	}
}

func TestActionsCarryTheTermsLeaseAndTimeouts(t *testing.T) {
	e := NewElection(testConfig, func() float64 { return 0 })
	if a := e.Step(Input{Kind: Tick, Now: at(0)}); a[0].Timeout != testConfig.Timeout {
		t.Fatalf("acquire timeout %v", a[0].Timeout)
	}
	granted := lease(7, 10)
	elected := e.Step(Input{Kind: Answered, Now: at(0), Lease: granted})
	if elected[0].Lease != granted {
		t.Fatal("Elected does not carry the granted lease")
	}
	// A renew sent 1.5 s before the deadline gets 1.5 s, not the 2 s timeout.
	e.NextRenew = at(7500 * time.Millisecond)
	renew := e.Step(Input{Kind: Tick, Now: at(7500 * time.Millisecond)})
	if renew[0].Kind != SendRenew || renew[0].Lease.FencingToken != 7 || renew[0].Timeout != 1500*time.Millisecond {
		t.Fatalf("renew action %+v", renew[0])
	}
	ended := e.Step(Input{Kind: Tick, Now: at(9 * time.Second)})
	if ended[0].Kind != Ousting || ended[0].Reason != EndedByDeadline || ended[0].Lease.FencingToken != 7 {
		t.Fatalf("ousting action %+v", ended[0])
	}
}

func TestFollowerJitterOnlyShortensRetry(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		e := NewElection(testConfig, func() float64 { return r })
		wait := e.followerWait(errHeld)
		if wait > testConfig.Retry || wait < testConfig.Retry*3/4 {
			t.Errorf("rand %v: wait %v outside [0.75, 1] x retry", r, wait)
		}
	}
}

func TestWake(t *testing.T) {
	e := NewElection(testConfig, func() float64 { return 0 })
	e.Step(Input{Kind: Tick, Now: at(0)})
	if _, ok := e.Wake(); ok {
		t.Fatal("a follower with an acquire in flight needs no timer")
	}
	e.Step(Input{Kind: Answered, Now: at(0), Lease: lease(1, 10)})
	if w, ok := e.Wake(); !ok || !w.Equal(at(3*time.Second)) {
		t.Fatalf("leader wakes at %v, want the renew at 3 s", w.Sub(base))
	}
	e.Step(Input{Kind: Tick, Now: at(3 * time.Second)})
	if w, ok := e.Wake(); !ok || !w.Equal(at(9*time.Second)) {
		t.Fatalf("leader with a renew in flight wakes at %v, want the deadline", w.Sub(base))
	}
}

func ExampleElection() {
	e := NewElection(testConfig, func() float64 { return 0 })
	fmt.Println(kinds(e.Step(Input{Kind: Tick, Now: at(0)})))
	fmt.Println(kinds(e.Step(Input{Kind: Answered, Now: at(0), Lease: lease(1, 10)})), e.Phase)
	// Output:
	// [send-acquire]
	// [elected] leading
}
