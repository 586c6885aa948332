package leaderelection

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	mrand "math/rand"
	"os"
	"sync"
	"time"
)

// LeaderManager campaigns for one key and steps down in time.
//
//	backend, _ := leaderelection.NewBackend("http://127.0.0.1:8080", "nightly-report")
//	lm, err := leaderelection.NewLeaderManager(backend, &leaderelection.Config{
//		Term: 8 * time.Second, Renew: 4 * time.Second, Retry: 2 * time.Second})
//	lm.OnElected = func(id string, cancel context.CancelFunc) { log.Print(id, " elected") }
//	lm.OnOusting = func(id string, cancel context.CancelFunc) { log.Print(id, " ousting") }
//	lm.OnError = func(id string, err error, cancel context.CancelFunc) { log.Print(id, " ", err) }
//	err = lm.Start(ctx) // blocks until ctx ends (or Stop, or cancel); releases on the way out
//
// The loop (the decisions are Election.Step; this file only performs them):
//
//  1. Following, it sends acquire(key, Identity, Term); on lease_held or an
//     error it waits Retry (jittered shorter). Meanwhile it follows the key's
//     watch stream, and a "released" or "expired" event ends that wait at once,
//     so a graceful handoff takes one round trip; while the stream is broken
//     it still tries every Retry and reconnects after Retry.
//  2. On success a term begins: the deadline is the monotonic time the request
//     was sent + min(Term, granted ttl) - Margin, and OnElected runs.
//  3. Leading, it renews every Renew; each success moves the deadline on.
//     Transient errors are retried with jitter inside the deadline and passed
//     to OnError; lease_lost or not_found ends the term at once.
//  4. At the deadline the term ends (OnOusting) whether or not a renew is
//     still hanging: calls run in their own goroutines and the loop wakes at
//     the deadline. IsLeader compares the deadline with the clock on every
//     call, so a process paused past it reads false first.
//  5. When ctx ends, or Stop or a callback's cancel is called, the term ends,
//     the lease is released so a follower takes over within its Retry, and
//     Start returns nil.
//  6. invalid_request, unauthorized and forbidden (IsPermanent) end the
//     election: OnError once, then as in 5; Start returns that error.
//
// Callbacks run one at a time in Start's goroutine, in order: OnOusting once
// after every OnElected, also on stop. Return quickly; do the leader's work
// elsewhere. From a callback, end the election with its cancel, not Stop
// (Stop waits for Start to return, which waits for the callback). A callback
// that panics is reported to OnError; the election goes on.
type LeaderManager struct {
	// Identity is the holder name sent to the service; default hostname-pid-random.
	Identity  string
	OnElected func(id string, cancel context.CancelFunc)
	OnOusting func(id string, cancel context.CancelFunc)
	OnError   func(id string, err error, cancel context.CancelFunc)
	// Clock is the elector's time (default SystemClock); set before Start.
	Clock Clock
	// Watch: follow the key's watch stream while following (default true).
	Watch bool

	backend Backend
	config  Config

	mu       sync.Mutex
	election *Election
	started  bool
	cancel   context.CancelFunc
	calling  *Lease // the term OnElected or OnOusting is being told about
	done     chan struct{}
	changed  chan struct{} // closed (and replaced) when a term begins or ends
}

// NewLeaderManager is an elector for backend's key; cfg nil takes every
// default. The error names the timing rule cfg breaks.
func NewLeaderManager(backend Backend, cfg *Config) (*LeaderManager, error) {
	if backend == nil {
		return nil, errors.New("leaderelection: backend is nil")
	}
	var given Config
	if cfg != nil {
		given = *cfg
	}
	effective, err := given.Effective()
	if err != nil {
		return nil, err
	}
	return &LeaderManager{
		Identity: DefaultIdentity(),
		Clock:    SystemClock{},
		Watch:    true,
		backend:  backend,
		config:   effective,
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
	}, nil
}

// DefaultIdentity is hostname-pid-random: unique per process, readable in the dashboard.
func DefaultIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Config is the effective timing (defaults filled in).
func (m *LeaderManager) Config() Config { return m.config }

// Key is the election's key.
func (m *LeaderManager) Key() string { return m.backend.Key() }

// IsLeader is true only while a term is open and the clock is before its deadline.
func (m *LeaderManager) IsLeader() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.election != nil && m.election.IsLeader(m.Clock.Now())
}

// Lease is the current term's latest lease, or nil when not leading.
func (m *LeaderManager) Lease() *Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.election == nil || !m.election.IsLeader(m.Clock.Now()) {
		return nil
	}
	lease := *m.election.Lease
	return &lease
}

// TermLease is, inside OnElected and OnOusting, the lease of the term that
// began or ended (OnOusting runs after the term closed, when Lease is nil);
// elsewhere the same as Lease.
func (m *LeaderManager) TermLease() *Lease {
	m.mu.Lock()
	calling := m.calling
	m.mu.Unlock()
	if calling != nil {
		lease := *calling
		return &lease
	}
	return m.Lease()
}

// FencingToken is the current term's token (pass it with every write made as
// leader), or 0 when not leading (tokens start at 1).
func (m *LeaderManager) FencingToken() int64 {
	if lease := m.Lease(); lease != nil {
		return lease.FencingToken
	}
	return 0
}

// Stop ends the election and waits until Start has released and returned.
// Before Start it only keeps Start from running. Not from a callback: use its cancel.
// WaitForLeadership blocks until this elector leads (true), or ctx ends or
// the election ends (false): the wait_for_leadership call of
// docs/elector.md.
//
//	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
//	defer cancel()
//	if lm.WaitForLeadership(ctx) { ... lm.FencingToken() ... }
func (m *LeaderManager) WaitForLeadership(ctx context.Context) bool {
	for {
		m.mu.Lock()
		leading := m.election != nil && m.election.IsLeader(m.Clock.Now())
		changed := m.changed
		m.mu.Unlock()
		if leading {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-m.done:
			return m.IsLeader()
		case <-changed:
		}
	}
}

func (m *LeaderManager) Stop() {
	m.mu.Lock()
	cancel, started := m.cancel, m.started
	if !started {
		m.started = true // a later Start returns at once
		close(m.done)
	}
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	<-m.done
}

// Start campaigns until ctx ends, Stop or a callback's cancel is called, or a
// permanent error ends the election (then it returns that error). It releases
// the lease on the way out. One Start per LeaderManager.
func (m *LeaderManager) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("leaderelection: Start was already called (or Stop)")
	}
	m.started, m.cancel = true, cancel
	rng := mrand.New(mrand.NewSource(m.Clock.Now().UnixNano() ^ int64(os.Getpid())))
	m.election = NewElection(m.config, rng.Float64)
	m.mu.Unlock()
	defer close(m.done)

	loop := &loop{m: m, ctx: ctx, cancel: cancel, answers: make(chan Input, 1), free: make(chan struct{}, 1)}
	if m.Watch {
		loop.wg.Add(1)
		go loop.follow()
	}
	err := loop.run()
	cancel()
	loop.wg.Wait()
	return err
}

// loop is one Start: it performs the actions of Election.Step and feeds it
// what happened.
type loop struct {
	m       *LeaderManager
	ctx     context.Context
	cancel  context.CancelFunc
	answers chan Input    // the answer of the call in flight
	free    chan struct{} // the watch stream saw the lease free
	wg      sync.WaitGroup
}

func (l *loop) step(in Input) []Action {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	in.Now = l.m.Clock.Now()
	return l.m.election.Step(in)
}

func (l *loop) run() error {
	stop := l.ctx.Done()
	actions := l.step(Input{Kind: Tick})
	for {
		for _, action := range actions {
			if action.Kind == Finish {
				l.m.mu.Lock()
				defer l.m.mu.Unlock()
				return l.m.election.Refusal
			}
			l.perform(action)
		}
		l.m.mu.Lock()
		refused := l.m.election.Refusal != nil
		l.m.mu.Unlock()
		if refused {
			l.cancel() // row C12's Cancel: the watch stream closes now, not after the release
		}
		l.m.mu.Lock()
		at, timed := l.m.election.Wake()
		now := l.m.Clock.Now()
		l.m.mu.Unlock()
		var timer Timer
		var fire <-chan time.Time
		if timed {
			timer = l.m.Clock.NewTimer(at.Sub(now))
			fire = timer.C()
		}
		var in Input
		select {
		case <-stop:
			stop = nil // once
			in = Input{Kind: Stop}
		case in = <-l.answers:
		case <-l.free:
			in = Input{Kind: Free}
		case <-fire:
			in = Input{Kind: Tick}
		}
		if timer != nil {
			timer.Stop()
		}
		actions = l.step(in)
	}
}

func (l *loop) perform(action Action) {
	m, id := l.m, l.m.Identity
	switch action.Kind {
	case SendAcquire:
		l.call(action.Timeout, func(ctx context.Context) (*Lease, error) {
			return m.backend.Acquire(ctx, id, m.config.Term)
		})
	case SendRenew:
		token := action.Lease.FencingToken
		l.call(action.Timeout, func(ctx context.Context) (*Lease, error) {
			return m.backend.Renew(ctx, id, token, m.config.Term)
		})
	case SendRelease:
		token := action.Lease.FencingToken
		l.call(action.Timeout, func(ctx context.Context) (*Lease, error) {
			return m.backend.Release(ctx, id, token)
		})
	case Elected:
		l.telling(action.Lease, func() {
			if m.OnElected != nil {
				l.guard("OnElected", func() { m.OnElected(id, l.cancel) })
			}
		})
	case Ousting:
		l.telling(action.Lease, func() {
			if m.OnOusting != nil {
				l.guard("OnOusting", func() { m.OnOusting(id, l.cancel) })
			}
		})
	case ReportError:
		l.report(action.Err)
	}
}

// report calls OnError, if set. A panic in OnError itself is logged: there is
// nobody else to tell.
func (l *loop) report(err error) {
	if l.m.OnError == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			log.Printf("leaderelection %s: OnError panicked: %v", l.m.Key(), r)
		}
	}()
	l.m.OnError(l.m.Identity, err, l.cancel)
}

// guard runs a callback; a panic is reported to OnError and the election goes
// on (the "Call" action of docs/elector.md: the callback's exception is its
// result). Letting it unwind would end the process while it may still lead,
// with no release: a crash where a report does.
func (l *loop) guard(name string, callback func()) {
	defer func() {
		if r := recover(); r != nil {
			l.report(fmt.Errorf("leaderelection: %s panicked: %v", name, r))
		}
	}()
	callback()
}

// telling runs a callback about the term of lease (TermLease).
func (l *loop) telling(lease *Lease, callback func()) {
	l.m.mu.Lock()
	l.m.calling = lease
	close(l.m.changed) // wakes WaitForLeadership
	l.m.changed = make(chan struct{})
	l.m.mu.Unlock()
	defer func() {
		l.m.mu.Lock()
		l.m.calling = nil
		l.m.mu.Unlock()
	}()
	callback()
}

// call sends one request in its own goroutine, so the loop stays free to end
// the term at its deadline. Its context is not Start's: a stop waits for the
// answer (bounded by the timeout) so that a lease granted meanwhile is released.
func (l *loop) call(timeout time.Duration, send func(ctx context.Context) (*Lease, error)) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		lease, err := send(ctx)
		l.answers <- Input{Kind: Answered, Lease: lease, Err: err}
	}()
}

// follow wakes the follower when the key's watch stream says the lease is free.
func (l *loop) follow() {
	defer l.wg.Done()
	last := ""
	for l.ctx.Err() == nil {
		stream, err := l.m.backend.Watch(l.ctx, last)
		if err == nil && stream == nil {
			return // this backend has no stream: the follower polls
		}
		if err == nil {
			for {
				event, err := stream.Next()
				if err != nil {
					break
				}
				last = event.ID
				if event.Free() {
					select {
					case l.free <- struct{}{}:
					default: // one wake pending is enough
					}
				}
			}
			stream.Close()
		}
		// Meanwhile the follower polls every Retry; reconnect after Retry.
		timer := l.m.Clock.NewTimer(l.m.config.Retry)
		select {
		case <-l.ctx.Done():
		case <-timer.C():
		}
		timer.Stop()
	}
}
