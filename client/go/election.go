package leaderelection

import (
	"errors"
	"time"
)

// The elector's decisions, with no I/O: a state, inputs, and the actions each
// input calls for. LeaderManager performs the actions (HTTP calls in their own
// goroutines, callbacks in order) and feeds back what happened; the tests
// drive Step with a table of inputs and times. Keeping the decisions in one
// function is what lets the elector be read against the state table of
// docs/elector.md row by row; a loop that interleaves calls and decisions (the
// first shape tried) hides them.
//
//	e := NewElection(cfg, rand.Float64)
//	actions := e.Step(Input{Kind: Tick, Now: now})     // [SendAcquire]
//	actions = e.Step(Input{Kind: Answered, Now: now, Lease: lease})
//	                                                   // [Elected] when a term began
//
// Times are readings of the elector's own monotonic clock; the service's
// clock never decides leadership.
//
// The table Step implements (every step first ends a Leading term whose
// Deadline has passed: Ousting "deadline", then Following; afterwards, with no
// call in flight, it sends what is due: Following at NextAcquire an acquire,
// Leading at NextRenew a renew, Stopping a release of Last or Finish):
//
//	phase      input                          actions, next phase
//	Following  acquire granted, deadline>now  Elected; Leading (deadline = sent + min(term, ttl) - margin)
//	Following  acquire granted, deadline<=now (nothing); retry after followerWait (at once if Woken)
//	Following  lease_held                     (nothing); retry after followerWait (at once if Woken)
//	Following  transient error                ReportError; retry after followerWait (Retry-After up to Term)
//	Following  renew (sent while leading) failed  ReportError; acquire at once
//	Following  Free                           acquire now (or Woken, if one is in flight)
//	Leading    Free                           Woken (the first follower wait after the term ends at once)
//	Leading    renew granted                  Deadline = max(Deadline, sent + min(term, ttl) - margin)
//	Leading    lease_lost / not_found         Ousting "lost"; Following, acquire at once
//	Leading    lease_lost naming us, our token    Ousting "lost"; Following, release that term
//	           and a successor (a transfer)       (its answer changes nothing), then acquire
//	Leading    transient error                ReportError; renew again after renewFailedWait
//	any        permanent error (IsPermanent)  Ousting "stopped" if leading, ReportError; Stopping
//	any        Stop                           Ousting "stopped" if leading; Stopping
//	Stopping   any answer                     (a grant is kept in Last, to release)
//	Stopping   release answered               ReportError unless lost/not_found/after a refusal; Finish, Done

// Phase is where the elector is.
type Phase int

const (
	Following Phase = iota // not leading: acquire when NextAcquire comes
	Leading                // a term is open until Deadline; renew when NextRenew comes
	Stopping               // stop asked: wait for the call in flight, then release
	Done                   // the election has ended
)

func (p Phase) String() string {
	return [...]string{"following", "leading", "stopping", "done"}[p]
}

// Call names a request to the service.
type Call int

const (
	NoCall Call = iota
	AcquireCall
	RenewCall
	ReleaseCall
)

// InputKind is what happened.
type InputKind int

const (
	Tick     InputKind = iota // time passed (a timer fired, or the loop started)
	Answered                  // the call in flight ended: Lease on success, else Err
	Free                      // the key's watch stream says the lease is free
	Stop                      // stop asked (context ended, Stop, or a callback's cancel)
)

// Input is one thing that happened at Now.
type Input struct {
	Kind  InputKind
	Now   time.Time
	Lease *Lease // Answered with success
	Err   error  // Answered with an error
}

// ActionKind is what the elector must do.
type ActionKind int

const (
	SendAcquire ActionKind = iota // acquire(key, identity, Term) with Timeout
	SendRenew                     // renew(key, identity, Lease.FencingToken, Term) with Timeout
	SendRelease                   // release(key, identity, Lease.FencingToken) with Timeout
	Elected                       // call OnElected (a term began with Lease)
	Ousting                       // call OnOusting (the term of Lease ended: Reason)
	ReportError                   // call OnError with Err
	Finish                        // the election is over: Start returns
)

func (k ActionKind) String() string {
	return [...]string{"send-acquire", "send-renew", "send-release", "elected", "ousting", "report-error", "finish"}[k]
}

func (k InputKind) String() string {
	return [...]string{"tick", "answered", "free", "stop"}[k]
}

// Why a term ended (Action.Reason of Ousting).
const (
	EndedByDeadline = "deadline" // no renewal in time: the deadline passed
	EndedByLost     = "lost"     // the service said lease_lost or not_found
	EndedByStopped  = "stopped"  // stop, cancel, or a permanent error
)

// Action is one thing to do, in order.
type Action struct {
	Kind    ActionKind
	Lease   *Lease
	Timeout time.Duration // of the call to send
	Reason  string        // Ousting
	Err     error         // ReportError
}

// Election is the elector's state. Step is its only writer.
type Election struct {
	Config Config         // effective (Config.Effective)
	Rand   func() float64 // jitter source in [0, 1)
	Phase  Phase
	Lease  *Lease    // the current term's latest lease (Leading)
	Last   *Lease    // the last lease granted to us, even after stepping down: to release
	Since  time.Time // when the current term began
	// Deadline: while Leading, the end of the term: the send time of the
	// latest granted call + min(Term, granted ttl) - Margin.
	Deadline    time.Time
	NextRenew   time.Time
	NextAcquire time.Time
	InFlight    Call      // the call sent and not yet answered (one at a time)
	SentAt      time.Time // when InFlight was sent
	Woken       bool      // a Free came while an acquire was in flight: retry at once
	Refusal     error     // the permanent error that ended the election
	// HandOver: an admin transferred the term of this lease: release it
	// while following (row C10), so that the successor takes over at once.
	HandOver *Lease
}

// NewElection is an elector's state before its first Tick.
func NewElection(cfg Config, rand func() float64) *Election {
	return &Election{Config: cfg, Rand: rand}
}

// IsLeader: a term is open and now is before its deadline. Read by callers
// between steps too, so that a process paused past the deadline answers
// false before anything else runs.
func (e *Election) IsLeader(now time.Time) bool {
	return e.Phase == Leading && now.Before(e.Deadline)
}

// Wake is when the election next needs a Tick; ok false when only an answer,
// a Free or a Stop can move it.
func (e *Election) Wake() (at time.Time, ok bool) {
	switch e.Phase {
	case Leading:
		at = e.Deadline
		if e.InFlight == NoCall && e.NextRenew.Before(at) {
			at = e.NextRenew
		}
		return at, true
	case Following:
		if e.InFlight == NoCall {
			return e.NextAcquire, true
		}
	}
	return time.Time{}, false
}

// Step applies one input and returns the actions it calls for, in order.
func (e *Election) Step(in Input) []Action {
	now := in.Now
	// The deadline first: whatever arrives, a term past its deadline is over,
	// and "not leader" is said before anything else is done.
	out := e.expire(now, nil)
	switch in.Kind {
	case Tick:
	case Free:
		// Row W2 of docs/elector.md: in any phase (a Free seen while leading
		// ends the first follower wait after the term); while a follower
		// waits with no call in flight, the wait ends now.
		switch {
		case e.Phase == Following && e.InFlight == NoCall:
			e.NextAcquire = now
		case e.Phase == Following || e.Phase == Leading:
			e.Woken = true
		}
	case Stop:
		if e.Phase == Leading || e.Phase == Following {
			out = e.stepDown(now, EndedByStopped, out)
			e.Phase = Stopping
		}
	case Answered:
		call := e.InFlight
		e.InFlight = NoCall
		switch call {
		case AcquireCall, RenewCall:
			out = e.answered(call, in, out)
		case ReleaseCall:
			if e.Phase == Following {
				// Row C10's release after a transfer: its answer changes nothing.
				e.HandOver, e.Last = nil, nil
				e.NextAcquire = in.Now
				break
			}
			if in.Err != nil && e.Refusal == nil && !errors.Is(in.Err, ErrLeaseLost) &&
				!errors.Is(in.Err, ErrNotFound) {
				out = append(out, Action{Kind: ReportError, Err: in.Err})
			}
			e.Last = nil
			e.Phase = Done
			out = append(out, Action{Kind: Finish})
		}
	}
	return e.due(now, out)
}

// answered decides on the answer to an acquire or a renew.
func (e *Election) answered(call Call, in Input, out []Action) []Action {
	now, err := in.Now, in.Err
	switch {
	case err == nil:
		return e.granted(in.Lease, now, out)
	case e.Phase == Stopping || e.Phase == Done:
		return out // the release decides what follows
	case IsPermanent(err):
		// No retry can fix it: say so once and end the election (as after Stop).
		out = e.stepDown(now, EndedByStopped, out)
		e.Phase = Stopping
		e.Refusal = err
		return append(out, Action{Kind: ReportError, Err: err})
	case call == AcquireCall:
		if !errors.Is(err, ErrLeaseHeld) {
			out = append(out, Action{Kind: ReportError, Err: err})
		}
		e.waitAsFollower(now, err)
		return out
	case errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrNotFound):
		// Another term has the key: end ours now, and ask again at once
		// (the answer names the new holder, or it is free again).
		ended := e.Lease
		out = e.stepDown(now, EndedByLost, out)
		e.NextAcquire = now
		if handedOn(err, ended) {
			// An admin named a successor of our term: step down (done), then
			// release as Stop does, so that it takes over at once.
			e.HandOver = ended
		}
		return out
	default: // a renew that failed on the way: transport, 503, 500
		out = append(out, Action{Kind: ReportError, Err: err})
		if e.Phase == Leading {
			e.NextRenew = now.Add(e.renewFailedWait(now))
		} else {
			e.NextAcquire = now // the deadline passed meanwhile: campaign again
		}
		return out
	}
}

// granted records a successful acquire or renew sent at SentAt. An answer
// that comes after its own deadline begins nothing, nor does one that comes
// while stopping; either way the lease is kept so that it can be released.
func (e *Election) granted(lease *Lease, now time.Time, out []Action) []Action {
	e.Last = lease
	if e.Phase == Stopping || e.Phase == Done {
		return out
	}
	// The service started its ttl no earlier than the call was sent, so
	// SentAt + ttl is no later than its expiry; the margin absorbs clock-rate
	// drift and the time the application needs to stop.
	ttl := e.Config.Term
	if granted := lease.TTLDuration(); granted < ttl {
		ttl = granted
	}
	deadline := e.SentAt.Add(ttl - e.Config.Margin)
	e.NextRenew = e.SentAt.Add(e.Config.Renew)
	if e.Phase == Leading {
		e.Lease = lease
		if deadline.After(e.Deadline) {
			e.Deadline = deadline
		}
		return out
	}
	if !deadline.After(now) {
		e.waitAsFollower(now, nil) // row C3's late answer: on to C6
		return out
	}
	e.Phase, e.Lease, e.Since, e.Deadline = Leading, lease, now, deadline
	return append(out, Action{Kind: Elected, Lease: lease})
}

// handedOn: a renew's lease_lost whose record still names this holder with
// the ended term's token and names a successor, i.e. an admin's transfer.
// (The ended lease was granted to this elector: its Holder is our identity.)
func handedOn(err error, ended *Lease) bool {
	var se *ServiceError
	if ended == nil || !errors.As(err, &se) || se.Lease == nil {
		return false
	}
	rec := se.Lease
	return rec.Holder == ended.Holder && rec.FencingToken == ended.FencingToken && rec.Successor != ""
}

// expire ends the open term if its deadline has passed.
func (e *Election) expire(now time.Time, out []Action) []Action {
	if e.Phase == Leading && !now.Before(e.Deadline) {
		out = e.stepDown(now, EndedByDeadline, out)
		e.NextAcquire = now
	}
	return out
}

// stepDown ends the open term now, if one is open.
func (e *Election) stepDown(now time.Time, reason string, out []Action) []Action {
	if e.Phase != Leading {
		return out
	}
	lease := e.Lease
	e.Phase, e.Lease = Following, nil
	return append(out, Action{Kind: Ousting, Lease: lease, Reason: reason})
}

// due sends what is due at now, if no call is in flight.
func (e *Election) due(now time.Time, out []Action) []Action {
	if e.InFlight != NoCall {
		return out
	}
	switch e.Phase {
	case Following:
		if e.HandOver != nil {
			action := Action{Kind: SendRelease, Lease: e.HandOver, Timeout: e.Config.Timeout}
			return e.send(now, ReleaseCall, action, out)
		}
		if !now.Before(e.NextAcquire) {
			return e.send(now, AcquireCall, Action{Kind: SendAcquire, Timeout: e.Config.Timeout}, out)
		}
	case Leading:
		if !now.Before(e.NextRenew) {
			action := Action{Kind: SendRenew, Lease: e.Lease, Timeout: e.attemptTimeout(now)}
			return e.send(now, RenewCall, action, out)
		}
	case Stopping:
		if e.Last != nil {
			action := Action{Kind: SendRelease, Lease: e.Last, Timeout: e.Config.Timeout}
			return e.send(now, ReleaseCall, action, out)
		}
		e.Phase = Done
		return append(out, Action{Kind: Finish})
	}
	return out
}

func (e *Election) send(now time.Time, call Call, action Action, out []Action) []Action {
	e.InFlight, e.SentAt = call, now
	return append(out, action)
}

// attemptTimeout is the timeout of the next renew: never past the deadline.
func (e *Election) attemptTimeout(now time.Time) time.Duration {
	timeout := e.Config.Timeout
	if left := e.Deadline.Sub(now); left < timeout {
		timeout = left
	}
	if timeout < MinTimeout {
		timeout = MinTimeout
	}
	return timeout
}

// renewFailedWait is the pause before the next renew after a transient
// failure: jittered, and short enough that one more full-length attempt still
// fits before the deadline when it can; never a busy loop.
func (e *Election) renewFailedWait(now time.Time) time.Duration {
	left := e.Deadline.Sub(now)
	if room := left - e.Config.Timeout; room > 0 {
		if e.Config.Retry < room {
			room = e.Config.Retry
		}
		return time.Duration((0.5 + 0.5*e.Rand()) * float64(room))
	}
	wait := e.Config.Timeout / 10
	if wait < MinTimeout {
		wait = MinTimeout
	}
	if left < 0 {
		left = 0
	}
	if left < wait {
		wait = left
	}
	return wait
}

// waitAsFollower is row C6: the next acquire after the follower wait, or at
// once when a Free came meanwhile; either way Woken is cleared.
func (e *Election) waitAsFollower(now time.Time, err error) {
	e.NextAcquire = now.Add(e.followerWait(err))
	if e.Woken {
		e.NextAcquire = now
	}
	e.Woken = false
}

// followerWait is the pause before the next acquire: Retry shortened by up to
// a quarter (jitter never lengthens it, so a released lease is taken within
// Retry); a 503's Retry-After is honoured up to one Term.
func (e *Election) followerWait(err error) time.Duration {
	wait := time.Duration((1 - 0.25*e.Rand()) * float64(e.Config.Retry))
	var se *ServiceError
	if errors.As(err, &se) && se.Code == "backend_unavailable" {
		after := se.RetryAfter
		if after > e.Config.Term {
			after = e.Config.Term
		}
		if after > wait {
			wait = after
		}
	}
	return wait
}
